# IFM's auxiliary network (Passalis et al., CVPR 2020, Sec. "auxiliary network"): a network like the final
# student but wider -- resnet8x4 for a resnet8 student -- first learns from the resnet32x4 teacher, by the
# IFM divergence on the last representation only (the pooled embedding, feats[-1], weight 1; the authors'
# exp1_train_aux.py transfers their last layer alone), plus CE. It then teaches the student on every layer
# (resnet8x4-resnet8.py), where the two networks' stages correspond one to one.
# Run as a stage of configs/pipelines/cifar100_ifm_auxiliary.py (the teacher checkpoint comes from there).
_base_ = ['../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py', '../../_base_/cifar100/methods/ifm.py']
distill = [dict(type='IFM', student='feats[-1]', teacher='feats[-1]', kernel='cosine', weight=15000)]
