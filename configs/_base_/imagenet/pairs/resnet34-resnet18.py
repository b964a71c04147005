# CRD Table 3 pair: torchvision's released ResNet-34 (73.31 / 91.42 top-1 / top-5) teaches a ResNet-18 trained
# from scratch with the 100-epoch recipe. The teacher's checkpoint is torchvision's own file (a plain state dict
# in torchvision's key layout, loaded as it is): put resnet34-b627a593.pth at the path below (nothing is
# downloaded) or set --cfg-options teacher.checkpoint=PATH.
_base_ = ['../../imagenet_classification.py']
teacher = dict(model=dict(type='tv_resnet34', num_classes=1000), checkpoint='weights/resnet34-b627a593.pth')
model = dict(type='tv_resnet18', num_classes=1000)
