# KDSVD: Lee, Kim & Song, ECCV 2018, "Self-supervised Knowledge Distillation Using Singular Value
# Decomposition", as RepDistiller's KDSVD: top-1 right singular vectors of the three stage outputs
# feats[1:-1], RBF between consecutive stages; k = 1, feature weight 1 with CE weight 1 (mdistiller's KDSVD
# defaults). Needs equal student/teacher widths per stage. No published CRD-Table-1 number.
distill = [dict(type='KDSVD', student='feats[1:-1]', teacher='feats[1:-1]', k=1, weight=1.0)]
