# IFM with an auxiliary network (Passalis, Tzelepi & Tefas, CVPR 2020): the resnet32x4 teacher teaches a
# wider copy of the student (resnet8x4) by IFM on its last representation, and that auxiliary network teaches
# the resnet8 student by IFM on every layer, the stages weighted 100 * 0.7^epoch (critical periods).
#   python tools/pipeline.py configs/pipelines/cifar100_ifm_auxiliary.py --data-root data/cifar100
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py'),
    dict(name='auxiliary', config='configs/cifar100/ifm/resnet32x4-resnet8x4_auxiliary.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    dict(name='student', config='configs/cifar100/ifm/resnet8x4-resnet8.py',
         cfg_options={'teacher.checkpoint': '{auxiliary.best}'}),
]
