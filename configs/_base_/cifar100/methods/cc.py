# CC: Peng et al., ICCV 2019. Correlation of 128-d embeddings of the pooled features; -r 1 -a 0 -b 0.02.
distill = [dict(type='CC', student='feats[-1]', teacher='feats[-1]', feat_dim=128, weight=0.02)]
