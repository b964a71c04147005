# STL-10 L -> ab, stage 2 with CRD, cross-modal: the L and the ab view of one image are the positive pair, the
# memory-bank entries of the other images the negatives (CRDSampleDataset mode='exact', sampling='any': no
# labels needed). CRD's embedding heads (linear + L2 norm, 128-d) sit on the pooled penultimate features of both
# networks (feats[-1], 128-d for WRN-16-2); RepDistiller's NCE settings (16384 negatives, temperature 0.07,
# memory momentum 0.5). The memory holds a row per image of the 105,000 (train + unlabelled).
import os.path as osp

from densekd.config import load_config

_base_ = ['../../_base_/stl10/crossmodal_pretrain.py']
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=16384, mode='exact', sampling='any',
                       dataset=load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', '_base_', 'stl10',
                                                    'crossmodal_pretrain.py'))['data']['train']))
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=16384, nce_t=0.07,
                nce_m=0.5, weight=1.0)]
