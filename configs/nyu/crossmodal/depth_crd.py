# Stage 2 with CRD (cross-modal: the RGB and the depth view of one frame are the positive pair, the other
# frames' memory entries the negatives; pooled 512-d embeddings, feat_dim 128, nce_t 0.07). The memory holds
# every training frame, so nce_k must stay below their number (795 real frames: 512).
_base_ = ['../../_base_/nyu/crossmodal_pretrain.py']
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=512, mode='exact', sampling='any',
                       dataset=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='train', target='label',
                                    crop_size=(416, 544), scale_range=(1.0, 1.5), flip=True)))
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=512, nce_t=0.07, weight=1.0)]
