# CRD Table 4, row 'at': WRN-40-2 -> WRN-16-2 with AT on CIFAR-100
# (configs/cifar100/distill/wrn_40_2-wrn_16_2/at.py), then linear probes on STL-10 and TinyImageNet (the stages
# of ./_base_/row.py). Published: 70.7 / 34.2 top-1 (STL-10 / TinyImageNet).
_base_ = ['./_base_/row.py']
stages = dict(student=dict(config='configs/cifar100/distill/wrn_40_2-wrn_16_2/at.py'))
