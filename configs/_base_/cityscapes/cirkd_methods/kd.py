# Plain KD in CIRKD's setting (winycg/CIRKD train_kd.py with only --lambda-kd 1): pixel-wise KL between the
# students' and the teacher's logits at T = 1 (PixelWiseKD on the 1/8-resolution logits), CE weight 1. Every
# other method base of this folder includes this term; this row measures it alone. CIRKD's table publishes
# no KD-only row.
distill = [dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0,
                T=1.0)]
