# Intra-class feature variation distillation in CIRKD's setting with a DeepLabV3-MobileNetV2 student
# (winycg/CIRKD train_scripts/train_kd/train_ifvd.sh; CIRKD: 73.12 -> 73.50 mIoU): DeepLabV3-R101 teacher,
# the terms and weights of the ResNet-18 student's run (the method base).
_base_ = ['./deeplabv3_mbv2_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/ifvd.py']
