# DeepLabV3 on a MobileNetV2 dilated to output stride 8, ASPP (rates 12/24/36) + 3x3 conv with 128 channels
# as CIRKD's deeplab_mobile (winycg/CIRKD models/deeplabv3_mobile.py), no auxiliary head (CIRKD trains its
# MobileNetV2 students without one): CIRKD's DeepLabV3-MobileNetV2 student (73.12 mIoU from ImageNet weights).
# smp's mobilenet_v2 encoder with no weights (densekd never downloads them): model.pretrained=/path/to/
# mobilenet_v2.pth loads a local torchvision/smp MobileNetV2 state dict.
# Departure: smp's encoder keeps torchvision's last 1x1 conv (320 -> 1280 channels, ImageNet-pretrained with
# the rest) and its ASPP reads those 1280 channels; CIRKD's backbone stops at the 320-channel block. The
# network is therefore larger than CIRKD's (7.2 M vs about 3.2 M parameters).
model = dict(type='seg_model', arch='DeepLabV3', encoder='mobilenet_v2', num_classes=19, aux_head=False,
             decoder_channels=128)
