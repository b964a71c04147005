# Ensemble distillation (CRD paper, Sec. 4 "Ensemble"): two teachers at once. CRD keeps one critic
# (embeddings + memory banks) per teacher; KD matches the teachers' averaged logits.
_base_ = ['../../_base_/cifar100_classification.py', '../../_base_/cifar100/methods/crd.py']
teachers = [
    dict(model=dict(type='resnet32x4', num_classes=100),
         checkpoint='work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth',
         config='configs/cifar100/teachers/resnet32x4.py'),
    dict(model=dict(type='wrn_40_2', num_classes=100),
         checkpoint='work_dirs/cifar100/teachers/wrn_40_2/checkpoints/best.pth',
         config='configs/cifar100/teachers/wrn_40_2.py'),
]
model = dict(type='resnet8x4', num_classes=100)
distill = [dict(type='KD', T=4, weight=1.0, teachers='all', ensemble='mean'),
           dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=16384, nce_t=0.07,
                nce_m=0.5, weight=0.8, teachers='all', ensemble='separate')]
