# Judge a distilled representation the way CRD does, then use it: train the resnet32x4 teacher, distil it
# into resnet8x4 with CRD, freeze the student's features and train a new linear classifier on them (linear
# probing: every module but `fc` frozen, BatchNorm statistics included), then fine-tune the whole network
# from the probe. Each stage reads the previous stage's best checkpoint.
#   python tools/pipeline.py configs/pipelines/cifar100_crd_student_probe_finetune.py --data-root data/cifar100
_features = ['conv1', 'bn1', 'layer1', 'layer2', 'layer3']
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py'),
    dict(name='crd', config='configs/cifar100/distill/resnet32x4-resnet8x4/crd.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    dict(name='probe', config='configs/cifar100/students/resnet8x4.py',
         cfg_options={'load_from': '{crd.best}', 'freeze': _features, 'train.epochs': 30,
                      'lr_schedule.milestones': [15, 25], 'optimizer.weight_decay': 0.0}),
    dict(name='finetune', config='configs/cifar100/students/resnet8x4.py',
         cfg_options={'load_from': '{probe.best}', 'train.epochs': 60, 'optimizer.lr': 0.005,
                      'lr_schedule.milestones': [30, 45]}),
]
