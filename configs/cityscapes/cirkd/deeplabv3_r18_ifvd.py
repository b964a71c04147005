# Intra-class feature variation distillation in CIRKD's setting (Wang et al., ECCV 2020; CIRKD's reproduction
# winycg/CIRKD train_scripts/train_kd/train_ifvd.sh, CIRKD: 75.59 mIoU): DeepLabV3-R101 -> DeepLabV3-R18 with
#   --lambda-kd 1     pixel-wise KL on the 1/8-resolution logits (T = 1)          -> PixelWiseKD, weight 1
#   --lambda-ifv 20   CriterionIFV on the ASPP-head features (labels nearest-resized
#                     to 1/8, ignore 255, MSE of the cosine maps over all pixels)  -> IFVD on 'decoder', weight 20
# CIRKD's script also trains its hinge adversarial term (--lambda-adv 0.001, --lambda-d 0.1); it is left out
# here, as in deeplabv3_r18_cwd.py (add a HolisticKD term to include an adversarial term).
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py']
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='IFVD', student='decoder', teacher='decoder', weight=20.0),
]
