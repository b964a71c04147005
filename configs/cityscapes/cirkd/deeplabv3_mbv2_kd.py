# Plain pixel-wise KD in CIRKD's setting: DeepLabV3-R101 -> deeplabv3_mbv2 (the term in the method base).
_base_ = ['./deeplabv3_mbv2_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/kd.py']
