# Cross-modal demo, stage 2: the depth student learns from the RGB teacher by CRD on the unlabelled RGB-D pairs
# of the synthetic rooms (configs/nyu/crossmodal/depth_crd.py, shrunk). tools/demo.py points
# teacher.checkpoint at the teacher it trains.
_base_ = ['../crossmodal/depth_crd.py']
teacher = dict(checkpoint='work_dirs/demo_crossmodal/teacher/checkpoints/best.pth')
data = dict(train=dict(nce_k=128, dataset=dict(type='SyntheticNYUDepthV2', num_samples=200, size=(96, 128),
                                               crop_size=(96, 128), scale_range=(1.0, 1.25))),
            batch_size=16, num_workers=0)
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=128, nce_t=0.07, weight=1.0)]
optimizer = dict(lr=0.05)
train = dict(_delete_=True, iters=300, checkpoint_interval=300, log_interval=25)
