_base_ = ['../../../_base_/cifar100/pairs/resnet110-resnet32.py', '../../../_base_/cifar100/methods/reviewkd.py']
# The release's script/reviewKD.sh trains this pair with --kd-loss-weight 1.0, the base's weight.
