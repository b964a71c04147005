# Student baseline of CRD's Table 3: torchvision's ResNet-18 trained alone with the 100-epoch recipe.
_base_ = ['../../_base_/imagenet_classification.py']
model = dict(type='tv_resnet18', num_classes=1000)
