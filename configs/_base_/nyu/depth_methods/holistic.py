# Pixel-wise + pair-wise + structured KD's holistic (WGAN-GP) term on the depth maps.
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0),
           dict(type='HolisticKD', weight=0.1, d_lr=4e-4)]
