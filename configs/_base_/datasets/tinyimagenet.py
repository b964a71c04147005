# TinyImageNet (200 classes, 64 x 64), for probing a CIFAR-100-trained network (CRD Table 4, transferability):
# the images are resized to 32 x 32 and normalised with CIFAR-100's statistics; training adds CIFAR's
# augmentation (zero-pad 4, random 32 crop, flip). For native 64 x 64 training set size=64, padding=8 and
# e.g. ImageNet's statistics (the loader's defaults).
# Expected under data/tinyimagenet/ (or --data-root PATH): tiny-imagenet-200/{wnids.txt, words.txt,
# train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt} (extracted from
# tiny-imagenet-200.zip); train = 100,000 images, val = 10,000. --synthetic swaps in SyntheticTinyImageNet.
task = dict(type='classification')
data = dict(
    train=dict(type='TinyImageNet', root='data/tinyimagenet', split='train', keys=('image',), size=32, crop='pad',
               padding=4, mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    val=dict(type='TinyImageNet', root='data/tinyimagenet', split='val', keys=('image',), size=32,
             mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    batch_size=64,
    val_batch_size=256,
    num_workers=4,
)
