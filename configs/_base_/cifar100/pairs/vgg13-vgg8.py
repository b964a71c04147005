# CRD Table 1 pair: teacher vgg13 -> student vgg8, CIFAR-100, the 240-epoch recipe.
# The teacher comes from configs/cifar100/teachers/vgg13.py (its default work dir below).
_base_ = ['../../cifar100_classification.py']
teacher = dict(model=dict(type='vgg13', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/vgg13/checkpoints/best.pth',
               config='configs/cifar100/teachers/vgg13.py')
model = dict(type='vgg8', num_classes=100)
