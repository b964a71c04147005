# Cross-modal transfer, stage 2 (shared part): a depth student (torchvision ResNet-18 on the 1-channel depth
# map, the teacher's 40-way head) learns from the RGB teacher on the paired RGB-D training frames WITHOUT
# labels (task 'representation': no task loss, no metrics; the run saves last.pth). The method files add
# `distill`. Both networks see the same augmented frame: the teacher batch['image'], the student batch['depth'].
import os.path as osp

from densekd.config import load_config

_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py']
task = dict(_delete_=True, type='representation')
student_input = 'depth'
model = dict(type='tv_resnet18', num_classes=40, in_channels=1)
teacher = dict(
    config='configs/nyu/crossmodal/rgb_teacher.py',
    checkpoint='work_dirs/nyu/crossmodal/rgb_teacher/checkpoints/best.pth',
    model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'nyu', 'crossmodal',
                               'rgb_teacher.py'))['model'],
    input='image')
data = dict(val=None, batch_size=16)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='cosine', by_epoch=False)
train = dict(epochs=60, log_interval=20, checkpoint_interval=10)
