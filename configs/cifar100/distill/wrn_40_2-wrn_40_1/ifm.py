_base_ = ['../../../_base_/cifar100/pairs/wrn_40_2-wrn_40_1.py', '../../../_base_/cifar100/methods/ifm.py']
