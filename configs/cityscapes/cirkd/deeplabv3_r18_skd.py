# Structured KD in CIRKD's setting (winycg/CIRKD train_scripts/train_kd/train_skd.sh; CIRKD: 75.42 mIoU):
# DeepLabV3-R101 -> DeepLabV3-R18, 512 x 1024 crops, batch 16, lr 0.02; terms and weights in the method base.
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/skd.py']
