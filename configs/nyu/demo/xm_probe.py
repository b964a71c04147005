# Cross-modal demo, stage 3: NYU-40 segmentation of the synthetic rooms from depth alone, with a head on the
# depth encoder's FROZEN features (configs/nyu/crossmodal/seg_probe.py, shrunk). Trained twice by the demo: on a
# random encoder, and on the CRD-distilled one (model.pretrained = stage 2's last.pth).
_base_ = ['../crossmodal/seg_probe.py']
data = dict(train=dict(type='SyntheticNYUDepthV2', num_samples=200, size=(96, 128), crop_size=(96, 128),
                       scale_range=(1.0, 1.25)),
            val=dict(type='SyntheticNYUDepthV2', num_samples=50, size=(96, 128)),
            batch_size=8, val_batch_size=25, num_workers=0)
model = dict(decoder_pyramid_channels=64, decoder_segmentation_channels=64, decoder_dropout=0.0)
optimizer = dict(lr=0.05)
train = dict(_delete_=True, iters=400, eval_interval=400, checkpoint_interval=400, log_interval=25)
