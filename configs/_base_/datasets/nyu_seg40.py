# NYU-Depth v2 labeled set, 40-class semantic segmentation (NYU-40, Gupta et al., CVPR 2013): 894 raw classes
# mapped through classMapping40.mat (mapClass / className), unlabeled -> ignore 255; official 795 / 654 split.
# Expected under data/nyu_depth_v2/ (or --data-root PATH):
#   nyu_depth_v2_labeled.mat (MATLAB v7.3 / HDF5), splits.mat, classMapping40.mat
# Every sample also carries 'depth' (metres, 0 = invalid), e.g. for a depth student / cross-modal input.
# For NYU-13 set data.train.num_classes=13 data.val.num_classes=13 task.num_classes=13 (the 40 -> 13 table is
# built in; mapping13_file='class13Mapping.mat' reads it from a file instead).
# --synthetic swaps in SyntheticNYUDepthV2 (same 40 classes, 96 x 128 frames; crops are clamped).
#
# Training: random scale 1.0-1.5, 416 x 544 random crop (label padded with 255), flip, ImageNet normalisation.
# Evaluation: full 480 x 640 test frames.
task = dict(type='segmentation', num_classes=40, ignore_index=255, aux_weight=0.4, mode='whole')
data = dict(
    train=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='train', target='label', num_classes=40,
               crop_size=(416, 544), scale_range=(1.0, 1.5), flip=True),
    val=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='test', target='label', num_classes=40),
    val_batch_size=1,   # global; whole 480 x 640 frames
    num_workers=4,
)
