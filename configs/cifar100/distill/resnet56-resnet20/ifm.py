_base_ = ['../../../_base_/cifar100/pairs/resnet56-resnet20.py', '../../../_base_/cifar100/methods/ifm.py']
