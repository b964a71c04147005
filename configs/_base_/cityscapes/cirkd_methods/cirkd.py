# CIRKD (Yang et al., "Cross-Image Relational Knowledge Distillation for Semantic Segmentation", CVPR 2022),
# the release's train_cirkd.py defaults (winycg/CIRKD; the same for every Cityscapes student of its
# train_scripts/train_cirkd/citys/*.sh, which pass no loss option):
#   --lambda-kd 1 (--kd-temperature 1)       CriterionKD on the 1/8-resolution logits   -> PixelWiseKD, weight 1
#   --lambda-minibatch-pixel 1               mini-batch pixel-to-pixel relations on the features before the
#     (--contrast-temperature 0.1)           classifier, per pair of images of a GPU's 2-image share (8 GPUs x
#                                            2 = batch 16): CIRKDMiniBatch on 'decoder', T = 0.1, group_size=2
#   --lambda-memory-pixel 0.1,               pixel-to-pixel and pixel-to-region contrast to the teacher's
#   --lambda-memory-region 0.1               memories: CIRKDMemory on 'decoder', weight 0.1 with both parts at 1
#     --pixel-memory-size 20000, --region-memory-size 2000 (per class), --pixel-contrast-size 4096,
#     --region-contrast-size 1024 (i.e. 216 / 54 slots per class), --contrast-temperature 0.1,
#     --contrast-kd-temperature 1, pixel_update_freq 16 (StudentSegContrast)
# The release's projection head (1x1 conv - BN - ReLU - 1x1 conv, student -> teacher width) is inside CIRKDMemory;
# its BatchNorm is a SyncBatchNorm in the release: set train.sync_bn=True under torchrun on CUDA for that.
# CIRKDMemory enqueues random pixels of each class (pixel_sampling='class'); the release's indexing enqueues the
# first pixels of the image in raster order instead -- pixel_sampling='release' reproduces it (see its docstring).
# Memory: 19 x 22000 x 512 floats (0.86 GB) of teacher embeddings, kept in every checkpoint.
distill = [
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='CIRKDMiniBatch', student='decoder', teacher='decoder', weight=1.0, T=0.1, group_size=2),
    dict(type='CIRKDMemory', student='decoder', teacher='decoder', weight=0.1, pixel_memory_size=20000,
         region_memory_size=2000, pixel_contrast_size=4096, region_contrast_size=1024, T=0.1, kd_T=1.0,
         pixel_weight=1.0, region_weight=1.0),
]
