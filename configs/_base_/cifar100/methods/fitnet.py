# FitNet: Romero et al., ICLR 2015. Hint on the second stage (RepDistiller hint_layer=2); -r 1 -a 0 -b 100.
distill = [dict(type='FitNet', student='feats[2]', teacher='feats[2]', weight=100)]
