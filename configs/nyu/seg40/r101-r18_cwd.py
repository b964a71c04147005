# NYU-40: channel-wise distillation (Shu et al., ICCV 2021) on the logits, T=4, weight 3.
_base_ = ['./student_pspnet_r18.py', '../../_base_/nyu/seg40_teacher_r101.py']
distill = [dict(type='CWD', T=4.0, weight=3.0)]
