# Teacher of CRD's Table 1: wrn_40_2 on CIFAR-100, 240 epochs (lr 0.05, x0.1 at 150/180/210).
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='wrn_40_2', num_classes=100)
