# FitNet on the last encoder stage (regressor from the student's channels to the teacher's), + DepthKD.
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='FitNet', student='encoder.layer4', teacher='encoder.layer4', weight=1.0)]
