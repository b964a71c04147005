# STL-10 demo, the random-init baseline: the ab student's initial weights (configs/stl10/crossmodal/ab_random_init.py,
# WRN-16-1; zero iterations).
_base_ = ['../crossmodal/ab_random_init.py']
model = dict(type='wrn_16_1')
data = dict(train=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(unlabeled=500)),
            num_workers=0)
