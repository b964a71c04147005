# DIST: Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher". Pearson-correlation
# relations of the softened predictions: inter-class (per sample) + intra-class (per class over the batch).
# beta = gamma = 2, tau = 4 with CE weight 1: the paper's CIFAR-100 setting as we recall it -- the authors
# publish no CIFAR code (their ImageNet default is beta = gamma = tau = 1), so this is unverified.
# Published: resnet32x4 -> resnet8x4 76.31 top-1.
task_weight = 1.0
distill = [dict(type='DIST', beta=2.0, gamma=2.0, T=4.0, weight=1.0)]
