# DKD: Zhao et al., CVPR 2022. alpha 1, beta 8, T 4, 20-epoch warm-up of the DKD weight (mdistiller recipe).
distill = [dict(type='DKD', alpha=1.0, beta=8.0, T=4, warmup=20, weight=1)]
