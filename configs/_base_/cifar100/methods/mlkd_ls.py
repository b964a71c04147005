# MLKD + logit standardisation: Sun et al., CVPR 2024. Their release's `--logit-stand --base-temp 2 --kd-weight 9`
# for MLKD sets its base temperature (KD.TEMPERATURE, the first of MLKD's five) to 2 and its KD weight to 9, and
# z-scores the logits of the instance-level KD terms: temperatures 2, 3, 5, 2, 6 (2 counted twice, 4 gone), MLKD
# weight 9. CE weight 1 on each view: that release's mdistiller/engine/cfg.py sets KD.LOSS.CE_WEIGHT = 1 (the
# same uncertainty as kd_ls.py). Its MLKD configs (configs/cifar100/mlkd/*.yaml) train 480 epochs with the lr
# still divided at 150/180/210, lr 0.025: kept here. Published: resnet32x4 -> resnet8x4 78.28 top-1.
_base_ = ['./mlkd.py']
task_weight = 1.0
distill = [dict(type='MLKD', temperatures=[2.0, 3.0, 5.0, 2.0, 6.0], view='image_strong', logit_std=True,
                weight=9.0),
           dict(type='ViewCE', view='image_strong', weight=1.0)]
train = dict(epochs=480)
