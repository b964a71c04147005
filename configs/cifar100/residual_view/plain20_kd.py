# The plain resnet20 (skip=False) distilled from the residual resnet56 teacher with KD (T=4, CE 0.1 + KD 0.9,
# the benchmark's KD recipe): does KD recover what the missing skip connections would give?
_base_ = ['../../_base_/cifar100/pairs/resnet56-resnet20.py', '../../_base_/cifar100/methods/kd.py']
model = dict(skip=False)
