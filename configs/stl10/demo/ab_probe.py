# STL-10 demo, stage 3: the linear probe of the ab student's pooled penultimate features
# (configs/stl10/crossmodal/ab_probe.py) on the 500 labelled synthetic pictures, scored on 500 test pictures.
_base_ = ['../crossmodal/ab_probe.py']
model = dict(type='wrn_16_1')
data = dict(train=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(train=500)),
            val=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(test=500)),
            batch_size=32, val_batch_size=250, num_workers=0)
