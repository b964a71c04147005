# PSPNet (Zhao et al., CVPR 2017) on a ResNet-101 dilated to output stride 8, pyramid pooling (1, 2, 3, 6)
# to 512 channels, plus the auxiliary FCN head on layer3 (loss weight 0.4, task.aux_weight): the teacher of
# the structured-KD paper (Liu et al., CVPR 2019; 78.56 mIoU on Cityscapes val in the paper).
# Random initialisation by default (nothing is downloaded); for the published numbers start from ImageNet
# weights with model.pretrained=/path/to/resnet101.pth (a local torchvision / smp encoder state dict).
# Differences from the reference network: torchvision-style single-conv stem (the reference uses the
# three-conv "deep stem") and a 1x1 (not 3x3) bottleneck after pyramid pooling (smp's PSPNet decoder).
model = dict(type='seg_model', arch='PSPNet', encoder='resnet101', num_classes=19, aux_head=True)
