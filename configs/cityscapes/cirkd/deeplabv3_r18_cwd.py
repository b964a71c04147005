# Channel-wise distillation in CIRKD's setting (winycg/CIRKD train_scripts/train_kd/train_cwd.sh; CIRKD:
# 75.55 mIoU): DeepLabV3-R101 -> DeepLabV3-R18; terms and weights in the method base.
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/cwd.py']
