# Shared setting of the depth demo (tools/demo.py depth): the NYU raw-frame recipe, shrunk to the synthetic
# rooms (96 x 128 frames) and a few hundred iterations on a 2-core CPU. Training depth has the Kinect-like holes
# of the raw frames (glass, mirrors, borders, depth-edge shadows, long-range speckle; ~8% of the pixels);
# the test rooms have complete depth, evaluated with the NYU metrics (Eigen crop scaled to the frame).
_base_ = [
    '../../../_base_/default_runtime.py',
    '../../../_base_/datasets/nyu_raw.py',
    '../../../_base_/schedules/nyu_depth_20e.py',
]
data = dict(
    train=dict(type='SyntheticNYUDepthRaw', num_samples=400, size=(96, 128), crop_size=(96, 128)),
    val=dict(type='SyntheticNYUDepthV2', split='test', num_samples=50, size=(96, 128)),
    batch_size=8, val_batch_size=25, num_workers=0,
)
optimizer = dict(lr=1e-3)
lr_schedule = dict(warmup_iters=50)
train = dict(_delete_=True, iters=500, eval_interval=500, checkpoint_interval=500, log_interval=25)
