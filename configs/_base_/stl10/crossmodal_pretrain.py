# Cross-modal transfer on STL-10, luminance -> chrominance (the L -> ab setting of CMC / CRD), stage 2 (shared
# part): an ab student (WRN-16-2 with a 2-channel first convolution, a 10-way head) learns from the L teacher
# (configs/stl10/wrn_16_2_L.py, trained on the 5,000 labelled images) on the train + unlabelled images (105,000;
# the labels are never read) WITHOUT labels: task 'representation' (no task loss, no metrics; the run saves
# last.pth only). The method files (configs/stl10/crossmodal/ab_*.py) add `distill`. Both networks see the same
# crop of the same image: the teacher batch['L'], the student batch['ab'] (configs/_base_/datasets/stl10_lab.py:
# random resized crop to 64 x 64 over 30-100% of the area, flip).
#
# Architecture and schedule are densekd's choice (WRN-16-2 for both views at 64 x 64, 30 epochs of SGD lr 0.05
# cosine, batch 64), not CRD's: CRD's STL-10 experiment used other networks and (as we recall the paper) an
# ImageNet-trained L teacher.
import os.path as osp

from densekd.config import load_config

_base_ = ['../default_runtime.py', '../datasets/stl10_lab.py']
student_input = 'ab'
model = dict(type='wrn_16_2', num_classes=10, in_channels=2)
teacher = dict(
    config='configs/stl10/wrn_16_2_L.py',
    checkpoint='work_dirs/stl10/wrn_16_2_L/checkpoints/best.pth',
    model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'stl10', 'wrn_16_2_L.py'))['model'],
    input='L')
data = dict(train=dict(split='train+unlabeled'), batch_size=64)
optimizer = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='cosine', by_epoch=False)
train = dict(epochs=30, log_interval=50, checkpoint_interval=1)
