# CRD Table 4 (transferability): a CIFAR-100 network's last feature layer -- the pooled penultimate features,
# feats[-1] (fc's input; 128-d for WRN-16-2 and WRN-40-2) -- frozen, with a linear classifier on top, trained on
# another dataset's train split and scored on its test split (the datasets base file of the config sets both:
# configs/_base_/datasets/{stl10,tinyimagenet}.py, images resized to 32 x 32 with CIFAR-100's statistics).
#
# CRD trained a linear classifier on the frozen features; densekd's recipe is its probe tool's (densekd/probe):
# features of the unaugmented images (probe.augment=False) standardised with the train split's statistics,
# multinomial logistic regression by full-batch L-BFGS, the weight decay chosen from 1e-6..1 on a stratified 10%
# of the train split, then refitted on the whole split. That is a departure from CRD's recipe, whose exact
# optimiser, augmentation and schedule we do not reproduce.
task = dict(type='classification')
probe = dict(layer='feats[-1]', mode='global')
