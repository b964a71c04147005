# Stage 2 with FitNet on the third ResNet stage (regressor to the teacher's layer3, weight 100).
_base_ = ['../../_base_/nyu/crossmodal_pretrain.py']
distill = [dict(type='FitNet', student='layer3', teacher='layer3', weight=100)]
