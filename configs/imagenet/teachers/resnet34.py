# Teacher of CRD's Table 3: torchvision's ResNet-34. Evaluate the released weights (73.31 top-1) with
#   python tools/test.py configs/imagenet/teachers/resnet34.py weights/resnet34-b627a593.pth --data-root PATH
# or train one from scratch with the same 100-epoch recipe.
_base_ = ['../../_base_/imagenet_classification.py']
model = dict(type='tv_resnet34', num_classes=1000)
