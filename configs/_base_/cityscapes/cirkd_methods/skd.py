# Structured KD in CIRKD's setting (winycg/CIRKD train_scripts/train_kd/train_skd.sh, the same weights for the
# ResNet-18 and the MobileNetV2 student), on output-stride-8 students at 512 x 1024 crops:
#   * pixel-wise: CIRKD's CriterionKD (per-pixel KL, 'batchmean' over B*h*w, T = 1) with --lambda-kd 1 on the
#     1/8-resolution logits -- the same normalisation as PixelWiseKD (which also masks ignore pixels): weight 1;
#   * pair-wise: CIRKD's CriterionStructuralKD on the features before the classifier ('decoder'), fixed 2 x 2
#     max-pooling windows (a 64 x 128 map -> a 32 x 64 node grid at 512 x 1024 crops), F.normalize (norm not
#     detached), mean over B * N^2 pairs, --lambda-skd 10: weight 10;
#   * holistic: densekd's WGAN-GP critic with the structured-KD weight 0.1. CIRKD itself trains a hinge-loss
#     critic of the same architecture with --lambda-adv 0.001 (generator) in every KD run; use
#     --cfg-options distill.2.weight=0.001 to match its generator weight.
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=10.0, pool='max', grid=(32, 64),
         detach_norm=False),
    dict(type='HolisticKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=0.1),
]
