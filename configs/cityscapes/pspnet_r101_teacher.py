# Teacher of the structured-KD benchmark: PSPNet-ResNet101 on Cityscapes with the 40k-iteration recipe
# (batch 8, 512 x 512 crops, SGD lr 0.01 poly 0.9, weight decay 5e-4).
#   python tools/train.py configs/cityscapes/pspnet_r101_teacher.py --data-root data/cityscapes
# Best weights: work_dirs/cityscapes/pspnet_r101_teacher/checkpoints/best.pth (what the KD configs load).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/schedules/seg_40k.py',
    '../_base_/models/pspnet_r101.py',
]
