# RKD: Park et al., CVPR 2019. Distance (25) + angle (50) on the pooled features; -r 1 -a 0 -b 1.
distill = [dict(type='RKD', student='feats[-1]', teacher='feats[-1]', w_d=25, w_a=50, weight=1)]
