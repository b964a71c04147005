# Attention transfer on the four encoder stages (RepDistiller's weight 1000), + DepthKD.
distill = [dict(type='DepthKD', loss='l1', weight=1.0),
           dict(type='AT', student=['encoder.layer1', 'encoder.layer2', 'encoder.layer3', 'encoder.layer4'],
                teacher=['encoder.layer1', 'encoder.layer2', 'encoder.layer3', 'encoder.layer4'], weight=1000)]
