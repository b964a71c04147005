# CRD Table 4, row 'crd': WRN-40-2 -> WRN-16-2 with CRD on CIFAR-100
# (configs/cifar100/distill/wrn_40_2-wrn_16_2/crd.py), then linear probes on STL-10 and TinyImageNet (the stages
# of ./_base_/row.py). Published: 71.6 / 35.6 top-1 (STL-10 / TinyImageNet).
_base_ = ['./_base_/row.py']
stages = dict(student=dict(config='configs/cifar100/distill/wrn_40_2-wrn_16_2/crd.py'))
