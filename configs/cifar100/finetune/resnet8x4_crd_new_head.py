# Fine-tuning a distilled student with a NEW classifier: resnet8x4 distilled from resnet32x4 by CRD (train
# configs/cifar100/distill/resnet32x4-resnet8x4/crd.py first; a pipeline sets load_from.path to {crd.best}).
# Everything but `fc` is loaded from the distilled checkpoint (load_from.exclude keeps `fc` at its fresh
# initialisation; train.log lists what was loaded and what was not), and the distilled features train at a
# tenth of the new head's learning rate (optimizer.param_groups, module-path prefixes of the model).
_base_ = ['../students/resnet8x4.py']
_features = ['conv1', 'bn1', 'layer1', 'layer2', 'layer3']
load_from = dict(path='work_dirs/cifar100/distill/resnet32x4-resnet8x4/crd/checkpoints/best.pth', exclude=['fc'])
optimizer = dict(lr=0.05, param_groups=[dict(prefix=p, lr_mult=0.1) for p in _features])
lr_schedule = dict(milestones=[30, 45])
train = dict(epochs=60)
