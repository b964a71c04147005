# Pixel-wise + pair-wise + structured KD's holistic (WGAN-GP) term on the depth maps.
# The critic reads the depth head's raw output before its x4 upsampling (segmentation_head.0, 1/4 resolution),
# as the structured-KD reference feeds its critic the network's raw output before the final upsampling (1/8
# logits for segmentation); on the full-resolution depth map it cost 16x more (step 2.37x the bound on CPU vs
# the 1.3x target: see the README's cost tables).
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0),
           dict(type='HolisticKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=0.1,
                d_lr=4e-4)]
