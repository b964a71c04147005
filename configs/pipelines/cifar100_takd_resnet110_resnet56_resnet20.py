# Teacher-assistant KD (TAKD; Mirzadeh et al., "Improved Knowledge Distillation via Teacher Assistant",
# AAAI 2020) on CIFAR-100: resnet110 teacher -> resnet56 assistant -> resnet20 student, KD at every step,
# each stage's best checkpoint teaching the next. The assistant is the resnet110 -> resnet20 KD config with
# a resnet56 student; the student is the resnet56 -> resnet20 KD config taught by the assistant.
#   python tools/pipeline.py configs/pipelines/cifar100_takd_resnet110_resnet56_resnet20.py --data-root data/cifar100
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet110.py'),
    dict(name='assistant', config='configs/cifar100/distill/resnet110-resnet20/kd.py',
         cfg_options={'model.type': 'resnet56', 'teacher.checkpoint': '{teacher.best}'}),
    dict(name='student', config='configs/cifar100/distill/resnet56-resnet20/kd.py',
         cfg_options={'teacher.checkpoint': '{assistant.best}'}),
]
