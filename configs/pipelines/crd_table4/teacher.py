# CRD Table 4, row 'teacher': the WRN-40-2 teacher itself probed on STL-10 and TinyImageNet (its pooled
# penultimate features, 128-d like the student's). Published: 68.6 / 31.5 top-1.
_base_ = ['./_base_/row.py']
stages = dict(student=None,
              probe_stl10=dict(config='configs/cifar100/transfer/wrn_40_2_stl10.py', checkpoint='{teacher.best}'),
              probe_tinyimagenet=dict(config='configs/cifar100/transfer/wrn_40_2_tinyimagenet.py',
                                      checkpoint='{teacher.best}'))
