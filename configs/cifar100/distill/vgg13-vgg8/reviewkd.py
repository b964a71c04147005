_base_ = ['../../../_base_/cifar100/pairs/vgg13-vgg8.py', '../../../_base_/cifar100/methods/reviewkd.py']
# The release's script/reviewKD.sh has no run for this pair (its VGG backbone is commented out): the base's
# weight 1 (the release's default). mid width 512, five levels (act1..act4 and the pooled vector).
