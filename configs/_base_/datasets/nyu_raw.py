# Supervised depth training on the NYU-Depth v2 raw frames (about 24k frames of the training scenes, the file
# list of BTS / AdaBins), evaluation on the 654 labeled test frames.
# Expected under data/nyu_depth_v2/ (or --data-root PATH; both datasets read from that root):
#   sync/<scene>/rgb_XXXXX.jpg, sync/<scene>/sync_depth_XXXXX.png   (uint16 millimetres, 0 = missing)
#   nyu_train_files.txt   lines 'rgb_path depth_path focal' relative to the root (BTS's list with its paths
#                         prefixed by 'sync', e.g.
#                         'sync/kitchen_0028b/rgb_00045.jpg sync/kitchen_0028b/sync_depth_00045.png 518.8579')
#   nyu_depth_v2_labeled.mat, splits.mat  (the test split)
# --synthetic swaps in SyntheticNYUDepthRaw / SyntheticNYUDepthV2 (procedural rooms, 96 x 128 frames).
#
# Training: random scale 1.0-1.5 with depth divided by the scale, 416 x 544 random crop, flip (BTS-like).
task = dict(type='depth', loss='silog', min_depth=1e-3, max_depth=10.0, eval_crop='eigen')
data = dict(
    train=dict(type='NYUDepthRaw', root='data/nyu_depth_v2', filelist='nyu_train_files.txt', crop_size=(416, 544),
               scale_range=(1.0, 1.5), flip=True, max_depth=10.0, depth_scale=1000.0),
    val=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='test', target='depth', max_depth=10.0),
    val_batch_size=1,
    num_workers=4,
)
