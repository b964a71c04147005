# KDCL-Naive with resnet56 + wrn_16_2.
_base_ = ['./resnet56_wrn_16_2_minlogit.py']
strategy = dict(rule='naive')
