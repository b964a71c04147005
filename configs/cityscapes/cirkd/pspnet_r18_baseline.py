# PSPNet-ResNet18 student of CIRKD's Cityscapes benchmark (CIRKD: 72.55 mIoU from ImageNet weights), trained
# alone in CIRKD's setting: 40k iterations of batch 16, 512 x 1024 crops, SGD lr 0.02 poly 0.9, weight decay
# 1e-4. Network: ResNet-18 dilated to output stride 8, pyramid pooling (4 branches of 128 channels) and a
# 512-channel block after it, as CIRKD's PSPNet head -- smp's PSPNet with psp_out_channels=512, whose block is a
# 1x1 conv where CIRKD's is a 3x3 conv --, auxiliary head on layer3 (weight 0.4).
_base_ = ['../../_base_/cityscapes_cirkd.py', '../../_base_/models/pspnet_r18.py']
model = dict(psp_out_channels=512)
