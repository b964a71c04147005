# IRG: Liu et al., CVPR 2019. Vertex, edge and transformation terms on the last two stages (weights inside).
distill = [dict(type='IRG', student='feats[-2:]', teacher='feats[-2:]', transform_pairs='consecutive',
                connector='linear', weight=1)]
