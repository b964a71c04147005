# Cityscapes fine annotations (Cordts et al., CVPR 2016): 2975 train / 500 val frames of 1024 x 2048,
# 19 train ids, ignore 255. Expected under data/cityscapes/ (or --data-root PATH):
#   leftImg8bit/{train,val}/{city}/*_leftImg8bit.png and gtFine/{train,val}/{city}/*_gtFine_labelIds.png
# --synthetic swaps in SyntheticCityscapes (same classes / ignore value / sample format, 64 x 128 frames).
#
# Training: the structured-KD / PSPNet recipe -- random scale 0.5-2.0, 512 x 512 random crop (image padded
# with 0, label with 255), horizontal flip, ImageNet normalisation. CIRKD-style configs override
# data.train.crop_size to (512, 1024).
# Evaluation: the whole 1024 x 2048 frame (task.mode='whole'). For sliding-window inference set
#   task.mode='slide' task.crop_size=(512,1024)   (stride defaults to 2/3 of the window)
# and task.scales / task.flip for multi-scale + flip testing.
task = dict(type='segmentation', num_classes=19, ignore_index=255, aux_weight=0.4, mode='whole')
data = dict(
    train=dict(type='Cityscapes', root='data/cityscapes', split='train', crop_size=(512, 512),
               scale_range=(0.5, 2.0), flip=True, photometric=False),
    val=dict(type='Cityscapes', root='data/cityscapes', split='val'),
    val_batch_size=1,   # global; whole 1024 x 2048 frames, at least one per process
    num_workers=4,
)
