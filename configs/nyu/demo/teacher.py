# Depth demo teacher: FPN on all four ResNet-18 stages (stride 32 features) with a 128/64-channel decoder,
# trained longer (700 iterations vs 500) and on the labelled rooms' COMPLETE depth (as the real labelled set's
# in-painted depths), where the students train on raw frames with Kinect-like holes.
_base_ = ['./_base_/synthetic.py', '../../_base_/models/depth_fpn_r18.py']
model = dict(encoder_depth=5, decoder_pyramid_channels=128, decoder_segmentation_channels=64, decoder_dropout=0.0)
data = dict(train=dict(_delete_=True, type='SyntheticNYUDepthV2', split='train', target='depth', num_samples=200,
                       size=(96, 128), crop_size=(96, 128), scale_range=(1.0, 1.5), flip=True, max_depth=10.0))
train = dict(iters=700, eval_interval=700, checkpoint_interval=700)
