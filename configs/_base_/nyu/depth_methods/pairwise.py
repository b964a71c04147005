# Pixel-wise depth KD + structured KD's pair-wise term on the decoder features (affinity graphs of 1/4 cells).
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0)]
