# The Knowledge Within's Inception scheme (Haroush et al., CVPR 2020): images optimised to maximise the target class's
# logit of the resnet32x4 teacher, with DeepInversion's TV-L2 prior (2.5e-5) and jitter, clipped to the valid pixel
# range (which bounds the logit). Prior, clipping and budget are our choices (see densekd/synthesis/methods.py).
_base_ = ['../../_base_/synthesis/cifar100_resnet32x4.py']
synthesis = dict(method='inception', loss=dict(logit=1.0, tv_l2=2.5e-5), clip=True)
