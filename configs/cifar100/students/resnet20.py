# Student baseline of CRD's Table 1: resnet20 trained alone on CIFAR-100 (same recipe as the teachers).
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='resnet20', num_classes=100)
