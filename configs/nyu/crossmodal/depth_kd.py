# Stage 2 with KD: the depth student matches the RGB teacher's softened class predictions (T=4).
_base_ = ['../../_base_/nyu/crossmodal_pretrain.py']
distill = [dict(type='KD', T=4.0, weight=1.0)]
