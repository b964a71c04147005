# MobileNetV2 / ShuffleNet students use lr 0.01 in the CRD recipe.
_base_ = ['./cifar100_240e.py']
optimizer = dict(lr=0.01)
