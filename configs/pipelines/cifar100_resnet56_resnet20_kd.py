# Two stages on CIFAR-100: train the resnet56 teacher (CRD recipe), then distil it into resnet20 with KD,
# the student reading the teacher stage's best checkpoint.
#   python tools/pipeline.py configs/pipelines/cifar100_resnet56_resnet20_kd.py --data-root data/cifar100
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet56.py'),
    dict(name='student', config='configs/cifar100/distill/resnet56-resnet20/kd.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
]
