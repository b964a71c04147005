# The Knowledge Within's BN-Statistics scheme (Haroush et al., CVPR 2020) for the resnet32x4 teacher: images
# optimised so that every BatchNorm input's batch Gaussian matches the stored one, sum over layers and channels of
# KL(N(batch mean, batch var) || N(running mean, running var)); no class target, no prior. Same optimisation budget
# as the DeepInversion config (our choice, for a like-for-like comparison; the paper's schedule is not reproduced).
_base_ = ['../../_base_/synthesis/cifar100_resnet32x4.py']
synthesis = dict(method='bns', loss=dict(bn=1.0), labels=None)
