# Channel-wise distillation (Shu et al., ICCV 2021) on the classifier logits (1/8 resolution), PSPNet-R101 ->
# PSPNet-R18 with the structured-KD recipe. T = 4 and weight 3 as CIRKD's train_cwd.sh (--lambda-cwd-logit 3,
# CriterionCWD(temperature=4)); MMRazor's cwd_logits_pspnet_r101_d8_pspnet_r18_d8 config uses tau = 1 with
# loss_weight = 5 instead (--cfg-options distill.0.T=1 distill.0.weight=5). Both normalise as densekd's CWD:
# sum over positions, mean over channels and images, times T^2.
_base_ = ['../seg_pspnet_kd.py']
distill = [
    dict(type='CWD', student='segmentation_head.0', teacher='segmentation_head.0', weight=3.0, T=4.0),
]
