# DeepLabV3 on a ResNet-18 dilated to output stride 8 (ASPP + 3x3 conv, 512 channels as CIRKD) with the
# auxiliary head (weight 0.4): CIRKD's student (74.21 mIoU from ImageNet weights:
# model.pretrained=/path/to/resnet18.pth; nothing is downloaded).
model = dict(type='seg_model', arch='DeepLabV3', encoder='resnet18', num_classes=19, aux_head=True,
             decoder_channels=512)
