# PKT: Passalis & Tefas, ECCV 2018. Probabilistic transfer on the pooled features; -r 1 -a 0 -b 30000.
distill = [dict(type='PKT', student='feats[-1]', teacher='feats[-1]', weight=30000)]
