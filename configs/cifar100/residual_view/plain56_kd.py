# The plain resnet56 (skip=False) distilled from the residual resnet110 teacher with KD (the benchmark's recipe).
_base_ = ['../../_base_/cifar100/pairs/resnet110-resnet32.py', '../../_base_/cifar100/methods/kd.py']
model = dict(type='resnet56', skip=False)
