# The DeepLabV3-R101 Cityscapes teacher of CIRKD's benchmark, as trained by
# configs/cityscapes/cirkd/deeplabv3_r101_teacher.py (`teacher.model` is read from that config, not copied).
# A missing checkpoint stops training with the command that trains it; override with teacher.checkpoint=PATH.
import os.path as osp

from densekd.config import load_config

teacher = dict(
    config='configs/cityscapes/cirkd/deeplabv3_r101_teacher.py',
    checkpoint='work_dirs/cityscapes/cirkd/deeplabv3_r101_teacher/checkpoints/best.pth',
    model={k: v for k, v in load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'cityscapes',
                                                 'cirkd', 'deeplabv3_r101_teacher.py'))['model'].items()
           if k != 'pretrained'},
)
