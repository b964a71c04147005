# PSPNet on a ResNet-18 dilated to output stride 8 with the auxiliary head (weight 0.4): the student of the
# structured-KD paper (69.10 -> 74.08 mIoU with pixel-wise + pair-wise + holistic distillation; its student
# starts from ImageNet weights: set model.pretrained=/path/to/resnet18.pth, nothing is downloaded).
# psp_out_channels=128 as the reference student head (PSPModule(512, 128)); each pooling branch then has
# 512 / 4 = 128 channels.
model = dict(type='seg_model', arch='PSPNet', encoder='resnet18', num_classes=19, aux_head=True,
             psp_out_channels=128)
