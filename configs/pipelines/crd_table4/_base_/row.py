# The shared stages of one row of CRD's Table 4 (transferability of CIFAR-100 representations); each row file
# names its CIFAR-100 training (`stages = dict(student=dict(config=...))` merges into the stage below).
#
#   teacher             WRN-40-2 on CIFAR-100 (configs/cifar100/teachers/wrn_40_2.py, the benchmark's recipe)
#   student             WRN-16-2 on CIFAR-100, distilled from the teacher's best.pth by the row's method
#                       (configs/cifar100/distill/wrn_40_2-wrn_16_2/<method>.py)
#   probe_stl10         linear probe of the student's frozen pooled penultimate features (best.pth) on STL-10 at
#                       32 x 32 (configs/cifar100/transfer/wrn_16_2_stl10.py)
#   probe_tinyimagenet  the same on TinyImageNet at 32 x 32 (configs/cifar100/transfer/wrn_16_2_tinyimagenet.py)
#
#   python tools/pipeline.py configs/pipelines/crd_table4/crd.py --seed S \
#       --data-root CIFAR100=data/cifar100 STL10=data/stl10 TinyImageNet=data/tinyimagenet   # one root per dataset
#   python tools/pipeline_table.py crd_table4
# Every row trains its own teacher in its folder. To reuse one teacher and existing benchmark students instead,
# probe their checkpoints directly (the probe-only path): python tools/linear_probe.py
# configs/cifar100/transfer/wrn_16_2_stl10.py CHECKPOINT --work-dir work_dirs/pipelines/crd_table4/ROW/seedS/probe_stl10
stages = dict(
    teacher=dict(config='configs/cifar100/teachers/wrn_40_2.py'),
    student=dict(cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    probe_stl10=dict(kind='probe', config='configs/cifar100/transfer/wrn_16_2_stl10.py', checkpoint='{student.best}'),
    probe_tinyimagenet=dict(kind='probe', config='configs/cifar100/transfer/wrn_16_2_tinyimagenet.py',
                            checkpoint='{student.best}'),
)
