# The multi-task student distilled from two teachers at once: the PSPNet-R101 NYU-40 teacher teaches the
# segmentation branch (pixel-wise KD on output.seg), the FPN-R101 depth teacher the depth branch (DepthKD on
# output.depth).
import os.path as osp

from densekd.config import load_config

_here = osp.dirname(osp.abspath(__file__))
_base_ = ['./fpn_r18_seg_depth.py']
teachers = [load_config(osp.join(_here, '..', '..', '_base_', 'nyu', 'seg40_teacher_r101.py'))['teacher'],
            load_config(osp.join(_here, '..', '..', '_base_', 'nyu', 'depth_teacher_r101.py'))['teacher']]
distill = [dict(type='PixelWiseKD', student='output.seg', teacher='output', teachers=0, T=1.0, weight=10.0),
           dict(type='DepthKD', student='output.depth', teacher='output', teachers=1, weight=1.0)]
