# Pixel-wise depth KD: the student's depth regresses the teacher's (L1, every pixel the teacher predicts,
# missing ground truth included).
distill = [dict(type='DepthKD', loss='l1', mask='all', weight=1.0)]
