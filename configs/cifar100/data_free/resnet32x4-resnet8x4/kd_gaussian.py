# Data-free KD resnet32x4 -> resnet8x4 as kd_deepinversion.py, on the Gaussian noise of The Knowledge Within's
# Gaussian scheme (configs/synthesis/cifar100/gaussian_resnet32x4.py). The student is fresh, so its BatchNorm
# statistics are learnt on the noise; the paper's frozen-statistics setting needs a student that starts from trained
# weights: configs/cifar100/data_free/resnet32x4-resnet32x4/kd_gaussian_frozen_bn.py.
_base_ = ['./kd_deepinversion.py']
data = dict(train=dict(path='work_dirs/synthesis/cifar100/gaussian_resnet32x4/images.h5'))
