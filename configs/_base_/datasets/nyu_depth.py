# NYU-Depth v2 labeled set (Silberman et al., ECCV 2012) for monocular depth: the official split of splits.mat
# (795 train / 654 test frames of 480 x 640), depth in metres (0 = no valid depth; values above max_depth read
# 0). Expected under data/nyu_depth_v2/ (or --data-root PATH):
#   nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5), splits.mat (trainNdxs / testNdxs, 1-based)
# --synthetic swaps in SyntheticNYUDepthV2 (procedural rooms, same format, 96 x 128 frames; crops are clamped).
#
# Training: random scale 1.0-1.5 (depth divided by the scale factor: the zoomed image is the scene seen closer),
# 416 x 544 random crop (the BTS crop size), horizontal flip, ImageNet normalisation.
# Evaluation: full 480 x 640 test frames; the depth task evaluates in (1e-3, 10] m inside the Eigen crop.
task = dict(type='depth', loss='silog', min_depth=1e-3, max_depth=10.0, eval_crop='eigen')
data = dict(
    train=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='train', target='depth', crop_size=(416, 544),
               scale_range=(1.0, 1.5), flip=True, max_depth=10.0),
    val=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='test', target='depth', max_depth=10.0),
    val_batch_size=1,   # global; whole 480 x 640 frames
    num_workers=4,
)
