# NST: Huang & Wang, 2017. Polynomial-kernel MMD on every stage output; -r 1 -a 0 -b 50.
distill = [dict(type='NST', student='feats[1:-1]', teacher='feats[1:-1]', weight=50)]
