# Shared setting of the demo (tools/demo.py): the Cityscapes recipe bases, shrunk to the synthetic stand-in
# (64 x 128 street scenes, 19 classes, ignore 255) and a few hundred iterations on a 2-core CPU.
_base_ = [
    '../../../_base_/default_runtime.py',
    '../../../_base_/datasets/cityscapes.py',
    '../../../_base_/schedules/seg_40k.py',
]
data = dict(
    # full 64 x 128 frames as crops, with the recipe's random scale 0.5-2.0 and flip
    train=dict(type='SyntheticCityscapes', num_samples=200, image_size=(64, 128), crop_size=(64, 128)),
    val=dict(type='SyntheticCityscapes', num_samples=50, image_size=(64, 128)),
    batch_size=8, val_batch_size=25, num_workers=0,
)
optimizer = dict(lr=0.05)
train = dict(iters=300, eval_interval=300, checkpoint_interval=300, log_interval=25)
