_base_ = ['../../../_base_/cifar100/pairs/resnet110-resnet32.py', '../../../_base_/cifar100/methods/ifm.py']
