# STL-10 demo, stage 4: fine-tuning the ab student on the 500 labelled synthetic pictures with a new head, the
# encoder at a tenth of the head's rate (configs/stl10/crossmodal/ab_finetune.py, shrunk: 200 iterations of
# batch 32). tools/demo.py sets load_from.path to the random-init or the CRD checkpoint.
_base_ = ['../crossmodal/ab_finetune.py']
model = dict(type='wrn_16_1')
load_from = dict(path='work_dirs/demo_stl10/crd/checkpoints/last.pth')
data = dict(train=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(train=500)),
            val=dict(type='SyntheticSTL10', size=32, colour_cue=0.0, num_samples=dict(test=500)),
            batch_size=32, val_batch_size=250, num_workers=0)
train = dict(_delete_=True, iters=200, eval_interval=200, checkpoint_interval=200, log_interval=25)
