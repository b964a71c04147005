# KDCL-General with resnet56 + wrn_16_2 (10% of the training images held out for the weights).
_base_ = ['./resnet56_wrn_16_2_linear.py']
strategy = dict(rule='general')
