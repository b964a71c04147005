# IFM from the auxiliary network (resnet8x4, trained by resnet32x4-resnet8x4_auxiliary.py) into the final
# student resnet8 (same depth, a quarter of the width): all four layers feats[1:] paired in order, the stages
# at 100 * 0.7^epoch and the embedding at 1 (configs/_base_/cifar100/methods/ifm.py), plus CE.
# The teacher checkpoint is the auxiliary stage's best (configs/pipelines/cifar100_ifm_auxiliary.py).
_base_ = ['../../_base_/cifar100_classification.py', '../../_base_/cifar100/methods/ifm.py']
teacher = dict(model=dict(type='resnet8x4', num_classes=100),
               checkpoint='work_dirs/pipelines/cifar100_ifm_auxiliary/auxiliary/checkpoints/best.pth',
               config='configs/cifar100/ifm/resnet32x4-resnet8x4_auxiliary.py')
model = dict(type='resnet8', num_classes=100)
