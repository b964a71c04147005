# Pixel-wise depth KD weighted by the teacher's confidence: where the ground truth is known, each pixel counts
# exp(-|t - gt| / (0.1 gt)) (the teacher's relative error), elsewhere 1.
distill = [dict(type='DepthKD', loss='l1', mask='all', confidence=0.1, weight=1.0)]
