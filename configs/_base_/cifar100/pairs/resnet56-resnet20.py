# CRD Table 1 pair: teacher resnet56 -> student resnet20, CIFAR-100, the 240-epoch recipe.
# The teacher comes from configs/cifar100/teachers/resnet56.py (its default work dir below).
_base_ = ['../../cifar100_classification.py']
teacher = dict(model=dict(type='resnet56', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/resnet56/checkpoints/best.pth',
               config='configs/cifar100/teachers/resnet56.py')
model = dict(type='resnet20', num_classes=100)
