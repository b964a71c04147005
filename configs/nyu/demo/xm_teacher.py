# Cross-modal demo (tools/demo.py crossmodal), stage 1: the RGB teacher (torchvision ResNet-18) learns the
# dominant-class view of the synthetic rooms (configs/nyu/crossmodal/rgb_teacher.py, shrunk to 96 x 128 frames
# and a few hundred iterations).
_base_ = ['../crossmodal/rgb_teacher.py']
data = dict(train=dict(dataset=dict(type='SyntheticNYUDepthV2', num_samples=200, size=(96, 128), crop_size=(96, 128),
                                    scale_range=(1.0, 1.25))),
            val=dict(dataset=dict(type='SyntheticNYUDepthV2', num_samples=50, size=(96, 128))),
            batch_size=16, val_batch_size=25, num_workers=0)
optimizer = dict(lr=0.05)
train = dict(_delete_=True, iters=400, eval_interval=400, checkpoint_interval=400, log_interval=25)
