# The Knowledge Within's three synthetic-data schemes (Haroush, Hubara, Hoffer & Soudry, CVPR 2020) beside
# DeepInversion on CRD's resnet32x4 -> resnet8x4 pair, in one table (pipeline.md): one synthesize stage per scheme
# (BN statistics, Inception, Gaussian noise, DeepInversion), each followed by KD on its images; then the Gaussian
# scheme's compression setting (a resnet32x4 student initialised from the teacher, distilled on the noise with its
# BatchNorm statistics frozen, and the same with them updating). Score each set's match to the teacher's BatchNorm
# statistics afterwards with
#   python tools/bn_similarity.py configs/synthesis/cifar100/bns_resnet32x4.py WORK/teacher/checkpoints/best.pth \
#       --data train gaussian WORK/synth_bns/images.h5 WORK/synth_inception/images.h5 WORK/synth_di/images.h5
#   python tools/pipeline.py configs/pipelines/cifar100_knowledge_within_resnet32x4_resnet8x4.py --data-root data/cifar100
_teacher = {'synthesis.teacher.checkpoint': '{teacher.best}'}
_kd = 'configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py'
_self = 'configs/cifar100/data_free/resnet32x4-resnet32x4/kd_gaussian_frozen_bn.py'
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py'),
    dict(name='synth_bns', kind='synthesize', config='configs/synthesis/cifar100/bns_resnet32x4.py',
         cfg_options=_teacher),
    dict(name='synth_inception', kind='synthesize', config='configs/synthesis/cifar100/inception_resnet32x4.py',
         cfg_options=_teacher),
    dict(name='synth_gaussian', kind='synthesize', config='configs/synthesis/cifar100/gaussian_resnet32x4.py',
         cfg_options=_teacher),
    dict(name='synth_di', kind='synthesize', config='configs/synthesis/cifar100/deepinversion_resnet32x4.py',
         cfg_options=_teacher),
    dict(name='kd_bns', config=_kd, cfg_options={'teacher.checkpoint': '{teacher.best}',
                                                 'data.train.path': '{synth_bns.data}'}),
    dict(name='kd_inception', config=_kd, cfg_options={'teacher.checkpoint': '{teacher.best}',
                                                       'data.train.path': '{synth_inception.data}'}),
    dict(name='kd_gaussian', config=_kd, cfg_options={'teacher.checkpoint': '{teacher.best}',
                                                      'data.train.path': '{synth_gaussian.data}'}),
    dict(name='kd_di', config=_kd, cfg_options={'teacher.checkpoint': '{teacher.best}',
                                                'data.train.path': '{synth_di.data}'}),
    dict(name='self_gaussian_frozen_bn', config=_self,
         cfg_options={'teacher.checkpoint': '{teacher.best}', 'load_from': '{teacher.best}',
                      'data.train.path': '{synth_gaussian.data}'}),
    dict(name='self_gaussian_updating_bn', config=_self.replace('frozen_bn', 'updating_bn'),
         cfg_options={'teacher.checkpoint': '{teacher.best}', 'load_from': '{teacher.best}',
                      'data.train.path': '{synth_gaussian.data}'}),
]
