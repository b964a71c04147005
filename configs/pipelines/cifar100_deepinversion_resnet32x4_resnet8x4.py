# Data-free distillation with DeepInversion (Yin et al., CVPR 2020) on CRD's resnet32x4 -> resnet8x4 pair: train the
# teacher (the only stage that sees real training images), invert 50,000 images from it, distil resnet8x4 on them
# by KD, evaluate on the real test set. The teacher stage is skipped when it has finished; to invert an existing
# teacher instead, run the synth and student stages with --cfg-options pointing at it (or use tools/synthesize.py
# and configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py directly).
#   python tools/pipeline.py configs/pipelines/cifar100_deepinversion_resnet32x4_resnet8x4.py --data-root data/cifar100
#   python tools/pipeline.py configs/pipelines/cifar100_deepinversion_resnet32x4_resnet8x4.py --synthetic --max-iters 2
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py'),
    dict(name='synth', kind='synthesize', config='configs/synthesis/cifar100/deepinversion_resnet32x4.py',
         cfg_options={'synthesis.teacher.checkpoint': '{teacher.best}'}),
    dict(name='student', config='configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}', 'data.train.path': '{synth.data}'}),
]
