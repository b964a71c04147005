# IFM across architectures (CRD's heterogeneous pair resnet32x4 -> ShuffleV1): both networks list five taps in
# feats (stem, three stages, pooled embedding); feats[1:] gives four each, and match='divergence' pairs every
# student layer with the teacher layer whose conditional distribution is closest to its own, once, on the
# first training batch (kept in the loss's `matched` buffer, so --resume keeps it). ShuffleV1 uses CRD's
# lr 0.01 for ShuffleNet / MobileNet students.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/cifar100.py',
          '../../_base_/schedules/cifar100_240e_lr001.py', '../../_base_/cifar100/methods/ifm.py']
teacher = dict(model=dict(type='resnet32x4', num_classes=100),
               checkpoint='work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth',
               config='configs/cifar100/teachers/resnet32x4.py')
model = dict(type='ShuffleV1', num_classes=100)
distill = [dict(type='IFM', student='feats[1:]', teacher='feats[1:]', alpha_init=100, gamma=0.7, match='divergence',
                weight=15000)]
