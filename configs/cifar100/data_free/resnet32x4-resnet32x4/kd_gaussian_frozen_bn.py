# The Knowledge Within's Gaussian scheme in its compression setting (Haroush et al., CVPR 2020): the student starts
# from the teacher's weights (load_from) and is distilled on Gaussian noise (configs/synthesis/cifar100/
# gaussian_resnet32x4.py) with its BatchNorm statistics frozen (freeze_bn_stats=True: every BatchNorm normalises
# with its stored statistics, which the noise cannot overwrite; the affine weights still train). The paper then
# quantises or prunes the student; densekd has no quantiser, so here the student stays the full-precision resnet32x4
# and the run measures how much of the teacher's accuracy (the ceiling) KD on noise keeps -- against
# kd_gaussian_updating_bn.py, the same run with the statistics updating on the noise. KD T 4, SGD lr 0.005 for 30
# epochs (x0.1 at 20, 25): our choices for fine-tuning from trained weights.
_base_ = ['../../../_base_/cifar100_classification.py']
model = dict(type='resnet32x4', num_classes=100)
teacher = dict(model=dict(type='resnet32x4', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth',
               config='configs/cifar100/teachers/resnet32x4.py')
load_from = 'work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth'
freeze_bn_stats = True
task_weight = 0.0
distill = [dict(type='KD', T=4, weight=1.0)]
data = dict(train=dict(_delete_=True, type='SynthesizedImages',
                       path='work_dirs/synthesis/cifar100/gaussian_resnet32x4/images.h5'))
optimizer = dict(lr=0.005)
lr_schedule = dict(milestones=[20, 25])
train = dict(epochs=30)
