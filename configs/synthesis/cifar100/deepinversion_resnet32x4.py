# DeepInversion (Yin et al., CVPR 2020) of the resnet32x4 teacher: CE to the target class + BN feature regulariser
# (weight 10) + TV-L2 prior (2.5e-5), the release's CIFAR-10 "paper parameters"; no first-BN multiplier, no image L2.
#   python tools/synthesize.py configs/synthesis/cifar100/deepinversion_resnet32x4.py
#   -> work_dirs/synthesis/cifar100/deepinversion_resnet32x4/images.h5 (read by
#      configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py)
_base_ = ['../../_base_/synthesis/cifar100_resnet32x4.py']
synthesis = dict(method='deepinversion',
                 loss=dict(ce=1.0, bn=10.0, first_bn_multiplier=1.0, tv_l2=2.5e-5, tv_l1=0.0, l2=0.0, adi=0.0))
