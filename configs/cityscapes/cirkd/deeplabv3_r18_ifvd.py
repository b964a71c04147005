# Intra-class feature variation distillation in CIRKD's setting (Wang et al., ECCV 2020; CIRKD's reproduction
# winycg/CIRKD train_scripts/train_kd/train_ifvd.sh, CIRKD: 75.59 mIoU): DeepLabV3-R101 -> DeepLabV3-R18;
# terms and weights in the method base.
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/ifvd.py']
