# CRD Table 4, row 'student': WRN-16-2 trained alone on CIFAR-100 (configs/cifar100/students/wrn_16_2.py, no
# teacher), then linear probes on STL-10 and TinyImageNet. Published: 69.7 / 33.7 top-1.
_base_ = ['./_base_/row.py']
stages = dict(teacher=None, student=dict(config='configs/cifar100/students/wrn_16_2.py', cfg_options=None))
