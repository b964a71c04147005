# STL-10 L -> ab, stage 4: fine-tuning the distilled ab network on the 5,000 labelled images with a NEW
# classifier: every weight but `fc` comes from the stage-2 checkpoint (a pipeline sets load_from.path to
# {pretrain.last}), and the distilled encoder trains at a tenth of the head's learning rate. The recipe of
# configs/stl10/wrn_16_2_ab.py otherwise (64 x 64 random resized crops, SGD, cosine), for 50 epochs.
_base_ = ['../wrn_16_2_ab.py']
load_from = dict(path='work_dirs/stl10/crossmodal/ab_crd/checkpoints/last.pth', exclude=['fc'])
_encoder = ['conv1', 'block1', 'block2', 'block3', 'bn1']
optimizer = dict(param_groups=[dict(prefix=p, lr_mult=0.1) for p in _encoder])
train = dict(epochs=50)
