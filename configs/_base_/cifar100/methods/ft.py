# FT: Kim et al., NeurIPS 2018. Paraphraser pre-trained on the teacher's last stage for 30 epochs,
# then factor transfer through the translator; -r 1 -a 0 -b 200.
distill = [dict(type='FT', student='feats[-2]', teacher='feats[-2]', rate=0.5, p1=2, weight=200)]
# RepDistiller pre-trains the paraphraser with lr 0.01 for ResNet/WRN students, with the main lr otherwise
# (the vgg13 -> vgg8 experiment sets init_lr back to 0.05).
strategy = dict(type='distillation', init_epochs=30, init_lr=0.01)
