# Data-free distillation on the synthetic CIFAR-100 stand-in, small enough for a 2-core CPU (run it with
# --synthetic): a simple_cnn teacher (width 16) trained on the 2,000 stand-in images, 500 images synthesised from it
# by DeepInversion, BNS and the Gaussian scheme (batches of 100, 100 steps; the configs' other settings), a simple_cnn
# student (width 8) distilled by KD alone on each set, and the same student distilled on 500 real stand-in images as
# the reference -- one table. Numbers: README, Data-free distillation.
#   python tools/pipeline.py configs/pipelines/cifar100_standin_data_free.py --synthetic --device cpu
_teacher_model = dict(type='simple_cnn', num_classes=100, width=16)
_student_model = dict(type='simple_cnn', num_classes=100, width=8)
_synth = {'synthesis.teacher.model': _teacher_model, 'synthesis.teacher.checkpoint': '{teacher.best}',
          'synthesis.num_images': 500, 'synthesis.batch_size': 100, 'synthesis.iterations': 100}
_kd = {'model': _student_model, 'teacher.model': _teacher_model, 'teacher.checkpoint': '{teacher.best}',
       'train.epochs': 30, 'lr_schedule.milestones': [20, 25]}
_kd_config = 'configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py'
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py',
         cfg_options={'model': _teacher_model, 'train.epochs': 15, 'lr_schedule.milestones': [10, 13]}),
    dict(name='synth_di', kind='synthesize', config='configs/synthesis/cifar100/deepinversion_resnet32x4.py',
         cfg_options=_synth),
    dict(name='synth_bns', kind='synthesize', config='configs/synthesis/cifar100/bns_resnet32x4.py',
         cfg_options=_synth),
    dict(name='synth_gaussian', kind='synthesize', config='configs/synthesis/cifar100/gaussian_resnet32x4.py',
         cfg_options=_synth),
    dict(name='kd_real', config='configs/cifar100/distill/resnet32x4-resnet8x4/kd.py',
         cfg_options={**_kd, 'task_weight': 0.0, 'distill.0.weight': 1.0, 'data.train.num_samples': 500}),
    dict(name='kd_di', config=_kd_config, cfg_options={**_kd, 'data.train.path': '{synth_di.data}'}),
    dict(name='kd_bns', config=_kd_config, cfg_options={**_kd, 'data.train.path': '{synth_bns.data}'}),
    dict(name='kd_gaussian', config=_kd_config, cfg_options={**_kd, 'data.train.path': '{synth_gaussian.data}'}),
]
