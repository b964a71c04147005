# Student baseline of the structured-KD benchmark: PSPNet-ResNet18 trained alone with the same recipe
# (paper: 69.10 mIoU from ImageNet weights -- add model.pretrained=/path/to/resnet18.pth).
_base_ = [
    '../_base_/default_runtime.py',
    '../_base_/datasets/cityscapes.py',
    '../_base_/schedules/seg_40k.py',
    '../_base_/models/pspnet_r18.py',
]
