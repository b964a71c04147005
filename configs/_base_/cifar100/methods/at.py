# AT: Zagoruyko & Komodakis, ICLR 2017. Attention on every stage output; -r 1 -a 0 -b 1000.
distill = [dict(type='AT', student='feats[1:-1]', teacher='feats[1:-1]', weight=1000)]
