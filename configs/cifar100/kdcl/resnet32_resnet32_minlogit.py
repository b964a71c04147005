# KDCL (Guo et al., CVPR 2020, "Online Knowledge Distillation via Collaborative Learning"): two resnet32
# students trained together from scratch on CIFAR-100, each on its own augmentation of the batch (image_0,
# image_1: MultiViewDataset draws the pad-4 crop and flip once per student), each distilled from the detached
# KDCL-MinLogit ensemble (per sample min_i(z_i - z_i[y])) at T=2 with weight 1, plus its own CE. The students
# follow the benchmark's 240-epoch recipe (configs/cifar100/students/resnet32.py) so that they compare with the
# baselines; summary.json lists student, peer1 and their logit-mean ensemble under `models`.
# Other rules: *_naive.py, *_linear.py, *_general.py (the last two hold out 10% of the training images).
_base_ = ['../students/resnet32.py']
data = dict(train=dict(_delete_=True, type='MultiViewDataset', views=2, keys=['image'],
                       dataset=dict(type='CIFAR100', root='data/cifar100', split='train')))
strategy = dict(type='kdcl', peers=[dict(type='resnet32', num_classes=100)], rule='minlogit', T=2.0, weight=1.0,
                student_inputs=['image_0', 'image_1'])
