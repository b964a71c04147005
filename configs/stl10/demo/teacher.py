# STL-10 demo (tools/demo.py stl10), stage 1: the L teacher of the STL-10 pipeline (configs/stl10/wrn_16_2_L.py)
# on the 500 labelled pictures of the synthetic stand-in, shrunk for a 2-core CPU: WRN-16-1 (not -2) on 32 x 32
# (not 64 x 64) random resized crops, 300 iterations of batch 32. The objects have random hues (colour_cue=0), so
# the class is in their shape and stripes: L shows them, ab only through the object's chroma against its
# greyish background.
_base_ = ['../wrn_16_2_L.py']
model = dict(type='wrn_16_1')
data = dict(train=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(train=500)),
            val=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(test=500)),
            batch_size=32, val_batch_size=250, num_workers=0)
train = dict(_delete_=True, iters=300, eval_interval=300, checkpoint_interval=300, log_interval=25)
