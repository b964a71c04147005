# CRD Table 1 pair: teacher wrn_40_2 -> student wrn_16_2, CIFAR-100, the 240-epoch recipe.
# The teacher comes from configs/cifar100/teachers/wrn_40_2.py (its default work dir below).
_base_ = ['../../cifar100_classification.py']
teacher = dict(model=dict(type='wrn_40_2', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/wrn_40_2/checkpoints/best.pth',
               config='configs/cifar100/teachers/wrn_40_2.py')
model = dict(type='wrn_16_2', num_classes=100)
