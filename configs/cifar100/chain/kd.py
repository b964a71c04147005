# One distillation link of a teacher-assistant chain (TAKD, Mirzadeh et al., AAAI 2020): KD from the previous
# link's best checkpoint (the benchmark's KD recipe: T 4, CE 0.1 + KD 0.9, 240 epochs). The chain
# (densekd.pipelines.chains.kd_chain) sets model.type, teacher.model.type and teacher.checkpoint.
_base_ = ['../../_base_/cifar100_classification.py', '../../_base_/cifar100/methods/kd.py']
teacher = dict(model=dict(type='resnet110', num_classes=100), checkpoint=None)
model = dict(type='resnet56', num_classes=100)
