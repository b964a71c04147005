# DIST in CIRKD's setting (Huang et al., NeurIPS 2022; the authors' segmentation release hunto/DIST_KD,
# segmentation/train_kd.py + train_scripts/train_kd/deeplabv3_res18.sh, built on CIRKD; DIST: 77.10 mIoU):
# DeepLabV3-R101 -> DeepLabV3-R18, 512 x 1024 crops, batch 16, lr 0.02, 40k iterations.
#   * DIST(beta=1, gamma=1) with no temperature on the 1/8-resolution logits, every pixel an instance (the
#     release reshapes the logits to (B*H*W) x C), --lambda-kd 1            -> DenseDIST, weight 1;
#   * the release adds 0.4 * lambda_kd * DIST on the auxiliary heads' logits; densekd's networks run their
#     auxiliary head in training mode only, so the frozen teacher has none to tap: that term is left out;
#   * weight decay: the release's train_kd.py default is 5e-4 (its script does not override it), CIRKD's 1e-4.
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py']
optimizer = dict(weight_decay=5e-4)
distill = [dict(type='DenseDIST', student='segmentation_head.0', teacher='segmentation_head.0', beta=1.0, gamma=1.0,
                T=1.0, weight=1.0)]
