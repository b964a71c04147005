# STL-10, labelled RGB images, for probing a CIFAR-100-trained network (CRD Table 4, transferability: the
# frozen features of a CIFAR-100 student, a linear classifier trained on STL-10): the 96 x 96 images are
# resized to 32 x 32 and normalised with CIFAR-100's statistics; training adds CIFAR's augmentation (zero-pad 4,
# random 32 crop, flip). For native-resolution training set size=96, padding=12 and the statistics of your
# choice (the loader's default: ImageNet's).
# Expected under data/stl10/ (or --data-root PATH): stl10_binary/{train,test}_{X,y}.bin, fold_indices.txt,
# class_names.txt (extracted from stl10_binary.tar.gz); train = 5,000 images (fold=k: the 1,000 of fold k),
# test = 8,000. --synthetic swaps in SyntheticSTL10.
task = dict(type='classification')
data = dict(
    train=dict(type='STL10', root='data/stl10', split='train', keys=('image',), size=32, crop='pad', padding=4,
               mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    val=dict(type='STL10', root='data/stl10', split='test', keys=('image',), size=32,
             mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761)),
    batch_size=64,
    val_batch_size=256,
    num_workers=4,
)
