# Pixel-wise depth KD with the scale-invariant log distance (variance focus 0.85, x10 as the SILog task loss).
distill = [dict(type='DepthKD', loss='silog', mask='all', weight=1.0)]
