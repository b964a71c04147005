# NYU-40: structured KD (pixel-wise + pair-wise, Liu et al.) from the PSPNet-R101 teacher into PSPNet-R18.
_base_ = ['./student_pspnet_r18.py', '../../_base_/nyu/seg40_teacher_r101.py']
distill = [dict(type='PixelWiseKD', T=1.0, weight=10.0),
           dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0)]
