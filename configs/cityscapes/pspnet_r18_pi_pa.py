# Structured-KD ablation: pixel-wise + pair-wise terms (no holistic / adversarial term).
_base_ = ['../seg_pspnet_kd.py']
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=80.0, T=1.0),
    dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0, pool='max', scale=0.5),
]
