# DKD on ImageNet (Zhao et al., CVPR 2022): mdistiller's configs/imagenet/r34_r18/dkd.yaml -- CE weight 1.0,
# beta 0.5, T 1, warm-up 1 epoch (the DKD weight is 1 from the first epoch on), alpha 1.0 (mdistiller's default;
# the yaml does not set it). mdistiller trains it with a batch of 512 and lr 0.2; here CRD's batch of 256 with lr
# 0.1 (the same learning rate per sample). Published: ResNet-18 71.70 top-1 (mdistiller README).
distill = [dict(type='DKD', alpha=1.0, beta=0.5, T=1.0, warmup=1, weight=1)]
