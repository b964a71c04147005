# STL-10 L -> ab, stage 2 with KD: the ab student's 10 logits match the L teacher's softened predictions (T = 4;
# the teacher is a 10-class STL-10 classifier, so its logits are STL-10 class scores). No labels, no CE term.
_base_ = ['../../_base_/stl10/crossmodal_pretrain.py']
distill = [dict(type='KD', T=4, weight=1.0)]
