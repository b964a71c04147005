# Intra-class feature variation distillation in CIRKD's setting (Wang et al., ECCV 2020; CIRKD's reproduction
# winycg/CIRKD train_scripts/train_kd/train_ifvd.sh):
#   --lambda-kd 1     pixel-wise KL on the 1/8-resolution logits (T = 1)          -> PixelWiseKD, weight 1
#   --lambda-ifv 20   CriterionIFV on the features before the classifier (labels nearest-resized
#                     to 1/8, ignore 255, MSE of the cosine maps over all pixels)  -> IFVD on 'decoder', weight 20
# CIRKD's script also trains its hinge adversarial term (--lambda-adv 0.001, --lambda-d 0.1); it is left out
# here, as in cwd.py (add a HolisticKD term to include an adversarial term).
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='IFVD', student='decoder', teacher='decoder', weight=20.0),
]
