# Data-free pixel-wise distillation (our extension of DeepInversion to dense prediction): the demo student
# (configs/cityscapes/demo/student_baseline.py) learns only from the demo teacher's per-pixel class distributions on
# images inverted from the teacher's BatchNorm statistics (configs/synthesis/cityscapes/deepinversion_demo_teacher.py;
# no labels: task_weight 0, the segmentation task's loss is not computed), and is evaluated on the labelled
# synthetic validation scenes. PixelWiseKD (T 1, weight 1) on the classifier logits, as the demo's SKD student.
#   python tools/pipeline.py configs/pipelines/cityscapes_demo_deepinversion.py
import os.path as osp

from densekd.config import load_config

_base_ = ['../demo/student_baseline.py']
teacher = dict(
    config='configs/cityscapes/demo/teacher.py',
    checkpoint='work_dirs/cityscapes/demo/teacher/checkpoints/best.pth',
    model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', 'demo', 'teacher.py'))['model'],
)
task_weight = 0.0
distill = [dict(type='PixelWiseKD', student='segmentation_head.0', teacher='segmentation_head.0', weight=1.0, T=1.0)]
data = dict(train=dict(_delete_=True, type='SynthesizedImages',
                       path='work_dirs/synthesis/cityscapes/deepinversion_demo_teacher/images.h5'))
