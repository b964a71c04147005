# Distil, then judge and reuse the distilled features: train the resnet32x4 teacher, distil it into resnet8x4
# with CRD, linearly probe the student's pooled features (a probe stage: cached features, logistic regression
# with the weight decay chosen on 10% of the training images; linear_probe_top1 in probe/probe_summary.json),
# then fine-tune the distilled network with a new classifier, its features at a tenth of the head's rate.
#   python tools/pipeline.py configs/pipelines/cifar100_crd_linear_probe.py --data-root data/cifar100
#   python tools/pipeline.py configs/pipelines/cifar100_crd_linear_probe.py --synthetic --max-iters 20
stages = [
    dict(name='teacher', config='configs/cifar100/teachers/resnet32x4.py'),
    dict(name='crd', config='configs/cifar100/distill/resnet32x4-resnet8x4/crd.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    dict(name='probe', kind='probe', config='configs/cifar100/students/resnet8x4.py', checkpoint='{crd.best}',
         cfg_options={'probe.layer': 'feats[-1]'}),
    dict(name='finetune', config='configs/cifar100/finetune/resnet8x4_crd_new_head.py',
         cfg_options={'load_from.path': '{crd.best}'}),
]
