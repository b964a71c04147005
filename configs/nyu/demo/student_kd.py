# Depth demo student + pixel-wise depth KD (L1 to the teacher's depth on every pixel, the training holes
# included) from the demo teacher; same network, data, schedule and seed as student_baseline.py.
# tools/demo.py depth points teacher.checkpoint at the teacher it trains.
import os.path as osp

from densekd.config import load_config

_base_ = ['./student_baseline.py']
teacher = dict(
    config='configs/nyu/demo/teacher.py',
    checkpoint='work_dirs/nyu/demo/teacher/checkpoints/best.pth',
    model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), 'teacher.py'))['model'],
)
distill = [dict(type='DepthKD', loss='l1', mask='all', weight=1.0)]
