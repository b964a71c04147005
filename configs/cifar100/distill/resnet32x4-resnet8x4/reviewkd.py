_base_ = ['../../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py', '../../../_base_/cifar100/methods/reviewkd.py']
# The release's script/reviewKD.sh trains this pair with --kd-loss-weight 5.0.
distill = [dict(type='ReviewKD', student='feats[1:]', teacher='preacts[1:]', warmup=20, weight=5.0)]
