# STL-10 L -> ab, stage 3: a linear probe of the ab student's pooled penultimate features (feats[-1], 128-d) with
# densekd's probe recipe (densekd/probe: features of the whole images resized to 64 x 64, no augmentation, cached;
# multinomial logistic regression by L-BFGS, weight decay chosen on 10% of the labelled train split) trained on
# the 5,000 labelled training images and scored on the 8,000 test images: linear_probe_top1. A pipeline stage
# dict(kind='probe', config=<this>, checkpoint='{pretrain.last}').
_base_ = ['../wrn_16_2_ab.py']
data = dict(train=dict(keys=('ab',)), val=dict(keys=('ab',)))
probe = dict(layer='feats[-1]', mode='global')
