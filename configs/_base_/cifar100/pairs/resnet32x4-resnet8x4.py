# CRD Table 1 pair: teacher resnet32x4 -> student resnet8x4, CIFAR-100, the 240-epoch recipe.
# The teacher comes from configs/cifar100/teachers/resnet32x4.py (its default work dir below).
_base_ = ['../../cifar100_classification.py']
teacher = dict(model=dict(type='resnet32x4', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth',
               config='configs/cifar100/teachers/resnet32x4.py')
model = dict(type='resnet8x4', num_classes=100)
