# DIST on ImageNet (Huang et al., NeurIPS 2022): beta = gamma = 1, tau = 1 with CE weight 1 and term weight 1 --
# the authors' DIST class defaults and their ImageNet setting as the paper states it (their recipe file,
# image_classification_sota's resnet_dist.yaml, was not available to check; torchdistill's reproduction weights
# the term by 2). Published: ResNet-18 72.07 top-1 with the ResNet-34 teacher (hunto/DIST_KD README).
task_weight = 1.0
distill = [dict(type='DIST', beta=1.0, gamma=1.0, T=1.0, weight=1.0)]
