_base_ = ['../../../_base_/cifar100/pairs/wrn_40_2-wrn_40_1.py', '../../../_base_/cifar100/methods/fsp.py']
# FSP needs equal student and teacher widths; wrn_40_1 is half as wide as wrn_40_2, and CRD's Table 1 has no
# FSP result for this pair. This variant maps the student's stages to the teacher's widths with 1x1 conv + BN
# connectors (trained in the initialisation stage): it runs, but it is not the published method.
distill = [dict(type='FSP', student='feats[:-1]', teacher='feats[:-1]', weight=50, init_only=True, connector='conv')]
