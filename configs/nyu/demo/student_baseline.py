# Depth demo student, trained alone: FPN on the first two ResNet-18 stages (encoder_depth=3: stride-8
# features) with a 32/32-channel decoder.
_base_ = ['./_base_/synthetic.py', '../../_base_/models/depth_fpn_r18.py']
model = dict(encoder_depth=3, decoder_pyramid_channels=32, decoder_segmentation_channels=32, decoder_dropout=0.0)
