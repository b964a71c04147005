# STL-10 L -> ab, stage 2 with FitNet: a hint on the second WRN stage (feats[2], a learnt regressor, weight 100:
# the CIFAR-100 recipe's, configs/_base_/cifar100/methods/fitnet.py).
_base_ = ['../../_base_/stl10/crossmodal_pretrain.py', '../../_base_/cifar100/methods/fitnet.py']
