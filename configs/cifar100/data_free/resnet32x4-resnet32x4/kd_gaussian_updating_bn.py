# kd_gaussian_frozen_bn.py with the student's BatchNorm statistics updating on the Gaussian noise (the ablation of
# The Knowledge Within's frozen statistics).
_base_ = ['./kd_gaussian_frozen_bn.py']
freeze_bn_stats = False
