# Channel-wise distillation (Shu et al., ICCV 2021) on the decoder features (conv connector to the teacher's
# channels), + DepthKD.
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='CWD', student='decoder', teacher='decoder', weight=3.0, connector='conv')]
