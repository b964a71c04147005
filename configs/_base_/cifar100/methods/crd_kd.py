# CRD+KD: Tian et al., ICLR 2020; -r 1 -a 1 -b 0.8.
_base_ = ['./crd.py']
distill = [dict(type='KD', T=4, weight=1.0),
           dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=16384, nce_t=0.07,
                nce_m=0.5, weight=0.8)]
