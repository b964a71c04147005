# Active mixup on CIFAR-100: resnet8x4 learns from 1000 unlabeled training images and up to 40,000 mixup images
# labelled by a black-box resnet32x4 (only its probabilities are read; configs/cifar100/teachers/resnet32x4.py
# trains it). The release's example is CIFAR-10 with VGG-16s; these numbers are its recipe, not tuned here.
_base_ = ['../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py', '../../_base_/cifar100/strategies/active_mixup.py']
