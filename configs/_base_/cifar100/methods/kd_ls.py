# KD + logit standardisation: Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation".
# Their release (sunshangquan/logit-standardization-KD, on mdistiller): `tools/train.py --cfg .../KD/...yaml
# --logit-stand --base-temp 2 --kd-weight 9` -> each logit vector z-scored, T = 2, KD weight 9. The CE weight
# comes from the release's mdistiller/engine/cfg.py, which sets KD.LOSS.CE_WEIGHT = 1 (mdistiller's own KD
# default is 0.1; the stored history of that file is not clean, so 1 vs 0.1 is not certain).
# Published: resnet32x4 -> resnet8x4 76.62 top-1.
task_weight = 1.0
distill = [dict(type='KD', T=2.0, logit_std=True, weight=9.0)]
