_base_ = ['../../../_base_/imagenet/pairs/resnet34-resnet18.py', '../../../_base_/imagenet/methods/dist.py']
