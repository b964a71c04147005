# VID: Ahn et al., CVPR 2019. Variational information on every stage output; -r 1 -a 0 -b 1.
distill = [dict(type='VID', student='feats[1:-1]', teacher='feats[1:-1]', weight=1)]
