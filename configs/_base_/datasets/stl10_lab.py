# STL-10 as two views of one image: CIE lightness 'L' (1 channel) and chromaticity 'ab' (2 channels), the
# cross-modal pair of CMC / CRD (an 'L' network and an 'ab' network see the same crop of the same image).
# Expected under data/stl10/ (or --data-root PATH): stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin,
# fold_indices.txt, class_names.txt (extracted from stl10_binary.tar.gz).
# --synthetic swaps in SyntheticSTL10 (ten classes of 96 x 96 object pictures in the same format).
#
# Distillation reads the 100,000 unlabelled images (task 'representation': no labels, no metrics); wrap the
# train dataset in CRDSampleDataset(mode='exact', sampling='any') for CRD. Views: L normalised with mean 50 /
# std 50, ab with mean (6.025, -6.6895) / std (92.208, 101.1675) (the sRGB gamut's mid-points and half-ranges).
# Training geometry (our choice, configurable): random resized crop to 64 x 64 over 30-100% of the image area
# (aspect 3/4..4/3) + horizontal flip, then Lab; evaluation resizes the whole 96 x 96 image to 64 x 64.
# A labelled run (probe / classifier) sets data.train.split='train' (fold=k for a predefined fold) and
# data.val=dict(type='STL10', root='data/stl10', split='test', keys=('L', 'ab'), size=64).
task = dict(type='representation')
data = dict(
    train=dict(type='STL10', root='data/stl10', split='unlabeled', keys=('L', 'ab'), size=64, crop='resized',
               crop_scale=(0.3, 1.0), flip=True),
    val=None,
    batch_size=64,
    num_workers=4,
)
