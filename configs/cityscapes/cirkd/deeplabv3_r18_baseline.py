# Student baseline of CIRKD's Cityscapes benchmark: DeepLabV3-ResNet18 alone, 40k iterations of batch 16,
# 512 x 1024 crops, SGD lr 0.02 poly 0.9, weight decay 1e-4 (CIRKD: 74.21 mIoU from ImageNet weights).
_base_ = ['../../_base_/cityscapes_cirkd.py', '../../_base_/models/deeplabv3_r18.py']
