# AB: Heo et al., AAAI 2019. Activation boundaries of the pre-ReLU stage outputs. As in RepDistiller
# (-r 1 -a 0 -b 1) the term acts only in the 30-epoch initialisation stage; the main stage is plain CE.
distill = [dict(type='AB', student='preacts[1:-1]', teacher='preacts[1:-1]', margin=1.0, weight=1, init_only=True)]
strategy = dict(type='distillation', init_epochs=30)
