_base_ = ['../../../_base_/cifar100/pairs/wrn_40_2-wrn_40_1.py', '../../../_base_/cifar100/methods/kdsvd.py']
# KDSVD aligns student and teacher singular vectors of the same width; wrn_40_1 is half as wide as wrn_40_2.
# This variant maps each student stage to the teacher's width with a 1x1 conv + BN connector first: it runs,
# but it is not the published method.
distill = [dict(type='KDSVD', student='feats[1:-1]', teacher='feats[1:-1]', k=1, weight=1.0, connector='conv')]
