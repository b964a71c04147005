# STL-10 L -> ab, stage 2 with attention transfer on the three WRN stage outputs (feats[1:-1]; weight 1000, the
# CIFAR-100 recipe's, configs/_base_/cifar100/methods/at.py). Teacher and student are both WRN-16-2.
_base_ = ['../../_base_/stl10/crossmodal_pretrain.py', '../../_base_/cifar100/methods/at.py']
