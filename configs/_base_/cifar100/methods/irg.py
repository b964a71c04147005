# IRG: Liu et al., CVPR 2019. Vertex, edge and transformation terms on the last two stages (weights inside).
# connector='auto': identity where the widths agree (resnet32x4 -> resnet8x4), a 1x1 conv on the maps and a
# linear map on the pooled vectors otherwise (the earlier 'linear' flattened the 256 x 8 x 8 map into a
# 16384 -> 16384 layer of 268 M parameters, 218x the student, making IRG 2.38x the step bound).
distill = [dict(type='IRG', student='feats[-2:]', teacher='feats[-2:]', transform_pairs='consecutive',
                connector='auto', weight=1)]
