# Data-free KD resnet32x4 -> resnet8x4 as kd_deepinversion.py, on the images of
# The Knowledge Within's BN-Statistics scheme (configs/synthesis/cifar100/bns_resnet32x4.py).
_base_ = ['./kd_deepinversion.py']
data = dict(train=dict(path='work_dirs/synthesis/cifar100/bns_resnet32x4/images.h5'))
