# Depth demo teacher: FPN on all four ResNet-18 stages (stride 32 features) with 128/64-channel decoder,
# trained longer (900 iterations vs 600).
_base_ = ['./_base_/synthetic.py', '../../_base_/models/depth_fpn_r18.py']
model = dict(encoder_depth=5, decoder_pyramid_channels=128, decoder_segmentation_channels=64, decoder_dropout=0.0)
train = dict(iters=900, eval_interval=900, checkpoint_interval=900)
