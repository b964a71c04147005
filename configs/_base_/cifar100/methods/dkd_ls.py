# DKD + logit standardisation: Sun et al., CVPR 2024. Their release's `--logit-stand --base-temp 2 --kd-weight 9`
# for DKD multiplies alpha and beta by 9 and sets the temperature to 2 (tools/train.py, latest version; an
# earlier version set beta = 9 * 9 and left DKD's T at 4 by mistake): alpha 9, beta 72, T 2, DKD's 20-epoch
# warm-up and CE weight 1 unchanged. Published: resnet32x4 -> resnet8x4 77.01 top-1.
distill = [dict(type='DKD', alpha=9.0, beta=72.0, T=2.0, warmup=20, logit_std=True, weight=1)]
