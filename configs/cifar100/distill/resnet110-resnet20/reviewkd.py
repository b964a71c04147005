_base_ = ['../../../_base_/cifar100/pairs/resnet110-resnet20.py', '../../../_base_/cifar100/methods/reviewkd.py']
# The release's script/reviewKD.sh has no run for this pair: the base's weight 1 (the release's default).
