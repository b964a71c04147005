# The Knowledge Within's Gaussian scheme (Haroush et al., CVPR 2020): 50,000 N(0, 1) images in the teacher's
# normalised input space (stored as uint8, i.e. clipped to the valid range), no optimisation. Distil on them with the
# student's BatchNorm statistics frozen (freeze_bn_stats=True; configs/cifar100/data_free/resnet32x4-resnet32x4/).
_base_ = ['../../_base_/synthesis/cifar100_resnet32x4.py']
synthesis = dict(method='gaussian', loss=dict(), labels=None, iterations=0)
