# STL-10 L -> ab, stage 2 with CRD + KD: the CRD term of ab_crd.py (weight 0.8, RepDistiller's -b 0.8) plus KD on
# the L teacher's 10 class logits (T = 4, weight 1).
_base_ = ['./ab_crd.py']
distill = [dict(type='KD', T=4, weight=1.0),
           dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=16384, nce_t=0.07,
                nce_m=0.5, weight=0.8)]
