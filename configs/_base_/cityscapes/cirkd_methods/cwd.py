# Channel-wise distillation in CIRKD's setting (winycg/CIRKD train_scripts/train_kd/train_cwd.sh, the same
# weights for the ResNet-18 and the MobileNetV2 student):
#   --lambda-kd 1        pixel-wise KL on the logits (T = 1)           -> PixelWiseKD, weight 1
#   --lambda-cwd-fea 50  CWD on the features before the classifier, T = 4  -> CWD on 'decoder', weight 50
#   --lambda-cwd-logit 3 CWD on the 1/8-resolution logits, T = 4       -> CWD on 'segmentation_head.0', weight 3
# CIRKD's script also keeps its hinge adversarial term (--lambda-adv 0.001); it is left out here (add a
# HolisticKD term to include an adversarial term).
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='CWD', student='decoder', teacher='decoder', weight=50.0, T=4.0, name='CWD_feat'),
    dict(type='CWD', student='segmentation_head.0', teacher='segmentation_head.0', weight=3.0, T=4.0,
         name='CWD_logits'),
]
