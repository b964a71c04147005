# Structured-KD ablation, pixel-wise term only (lambda_pi = 10 in the reference's normalisation = weight 80
# here, see configs/seg_pspnet_kd.py).
_base_ = ['../seg_pspnet_kd.py']
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=80.0, T=1.0),
]
