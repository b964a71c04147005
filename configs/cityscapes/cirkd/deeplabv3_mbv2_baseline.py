# DeepLabV3-MobileNetV2 student of CIRKD's Cityscapes benchmark (CIRKD: 73.12 mIoU from ImageNet weights),
# trained alone in CIRKD's setting: 40k iterations of batch 16, 512 x 1024 crops, SGD lr 0.02 poly 0.9, weight
# decay 1e-4 (winycg/CIRKD train_scripts/train_baseline/citys/deeplabv3_mbv2.sh). Network and its departure from
# CIRKD's: configs/_base_/models/deeplabv3_mbv2.py.
_base_ = ['../../_base_/cityscapes_cirkd.py', '../../_base_/models/deeplabv3_mbv2.py']
