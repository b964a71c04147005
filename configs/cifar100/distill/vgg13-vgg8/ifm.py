_base_ = ['../../../_base_/cifar100/pairs/vgg13-vgg8.py', '../../../_base_/cifar100/methods/ifm.py']
