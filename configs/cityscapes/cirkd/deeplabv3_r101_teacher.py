# Teacher of CIRKD's Cityscapes benchmark: DeepLabV3-ResNet101, 40k iterations of batch 16, 512 x 1024 crops,
# SGD lr 0.02 poly 0.9, weight decay 1e-4 (CIRKD: 78.07 mIoU).
#   python tools/train.py configs/cityscapes/cirkd/deeplabv3_r101_teacher.py --data-root data/cityscapes
_base_ = ['../../_base_/cityscapes_cirkd.py', '../../_base_/models/deeplabv3_r101.py']
