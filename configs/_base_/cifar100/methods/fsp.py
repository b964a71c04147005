# FSP: Yim et al., CVPR 2017. Flow matrices between consecutive stages. As in RepDistiller
# (-r 1 -a 0 -b 50) the term acts only in the 30-epoch initialisation stage.
distill = [dict(type='FSP', student='feats[:-1]', teacher='feats[:-1]', weight=50, init_only=True)]
strategy = dict(type='distillation', init_epochs=30)
