# STL-10 demo, stage 2: the ab student (WRN-16-1, 2 channels) learns from the L teacher by CRD, without labels, on
# 1,000 synthetic pictures (the 500 of the labelled split, whose labels are not read, + 500 unlabelled):
# configs/stl10/crossmodal/ab_crd.py shrunk to 32 x 32, nce_k 256 and 800 iterations of batch 32 (~26 epochs: the
# memory bank needs a few epochs before its rows carry the teacher's embeddings; at 500 iterations the features
# were barely better than random, see the README). tools/demo.py points teacher.checkpoint at its teacher.
_base_ = ['../crossmodal/ab_crd.py']
model = dict(type='wrn_16_1')
teacher = dict(model=dict(type='wrn_16_1'), checkpoint='work_dirs/demo_stl10/teacher/checkpoints/best.pth')
data = dict(train=dict(nce_k=256, dataset=dict(type='SyntheticSTL10', size=32, colour_cue=0.0,
                                               num_samples=dict(train=500, unlabeled=500))),
            batch_size=32, num_workers=0)
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=256, nce_t=0.07,
                nce_m=0.5, weight=1.0)]
train = dict(_delete_=True, iters=800, checkpoint_interval=800, log_interval=25)
