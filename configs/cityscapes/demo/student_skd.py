# Demo student + structured KD (pixel-wise + pair-wise + holistic) from the demo teacher; same network, data,
# schedule and seed as student_baseline.py. tools/demo.py points teacher.checkpoint at the teacher it trains.
import os.path as osp

from densekd.config import load_config

_base_ = ['./student_baseline.py']
teacher = dict(
    config='configs/cityscapes/demo/teacher.py',
    checkpoint='work_dirs/cityscapes/demo/teacher/checkpoints/best.pth',
    model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), 'teacher.py'))['model'],
)
distill = [
    # weight 1: the recipe's 80 (= 10 x batch 8, see configs/seg_pspnet_kd.py) diverges at the demo's lr 0.05
    dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0),
    dict(type='PairWiseKD', student='decoder', teacher='decoder', weight=1.0, pool='max', scale=0.5),
    dict(type='HolisticKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=0.1),
]
