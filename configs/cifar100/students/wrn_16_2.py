# Student baseline of CRD's Table 1: wrn_16_2 trained alone on CIFAR-100 (same recipe as the teachers).
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='wrn_16_2', num_classes=100)
