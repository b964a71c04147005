# Data-free KD resnet32x4 -> resnet8x4 as kd_deepinversion.py, on the images of Adaptive DeepInversion
# (configs/synthesis/cifar100/adi_resnet32x4.py, which competes with the student of kd_deepinversion.py).
_base_ = ['./kd_deepinversion.py']
data = dict(train=dict(path='work_dirs/synthesis/cifar100/adi_resnet32x4/images.h5'))
