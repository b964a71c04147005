# KDCL of two different networks, resnet56 (the primary model, `model`) and wrn_16_2 (peer1), each with its
# own optimiser and view; every rule as for two resnet32s (resnet32_resnet32_*.py). Lists replace, so `peers`
# is the new list.
_base_ = ['./resnet32_resnet32_minlogit.py']
model = dict(type='resnet56', num_classes=100)
strategy = dict(peers=[dict(type='wrn_16_2', num_classes=100)])
