# Stage 2 with KD + attention transfer on the four ResNet stages (RepDistiller's weight 1000).
_base_ = ['../../_base_/nyu/crossmodal_pretrain.py']
distill = [dict(type='KD', T=4.0, weight=1.0),
           dict(type='AT', student='feats[1:5]', teacher='feats[1:5]', weight=1000)]
