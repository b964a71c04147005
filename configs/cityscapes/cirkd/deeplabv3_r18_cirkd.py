# CIRKD (Yang et al., CVPR 2022; winycg/CIRKD train_scripts/train_cirkd/citys/deeplabv3_res18.sh; CIRKD: 76.38
# mIoU): DeepLabV3-R101 -> DeepLabV3-R18, 512 x 1024 crops, batch 16, lr 0.02, 40k iterations; terms and
# weights (logit KD 1, mini-batch pixel-to-pixel 1, memory pixel-to-pixel + pixel-to-region 0.1) in the
# method base.
_base_ = ['./deeplabv3_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/cirkd.py']
