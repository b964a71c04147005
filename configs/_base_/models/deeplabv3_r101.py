# DeepLabV3 (Chen et al., 2017) on a ResNet-101 dilated to output stride 8, ASPP (rates 12/24/36) + 3x3 conv
# with 512 channels as CIRKD's network (smp's default is 256), plus the auxiliary FCN head on layer3 (weight
# 0.4): the teacher of CIRKD's Cityscapes benchmark (Yang et al., "Cross-Image Relational Knowledge
# Distillation for Semantic Segmentation", CVPR 2022; 78.07 mIoU).
# Random initialisation by default; model.pretrained=/path/to/resnet101.pth for ImageNet weights.
model = dict(type='seg_model', arch='DeepLabV3', encoder='resnet101', num_classes=19, aux_head=True,
             decoder_channels=512)
