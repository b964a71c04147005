_base_ = ['../../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py', '../../../_base_/cifar100/methods/ifm.py']
