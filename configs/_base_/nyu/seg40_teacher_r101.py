# The PSPNet-R101 NYU-40 teacher as trained by configs/nyu/seg40/teacher_pspnet_r101.py.
import os.path as osp

from densekd.config import load_config

teacher = dict(
    config='configs/nyu/seg40/teacher_pspnet_r101.py',
    checkpoint='work_dirs/nyu/seg40/teacher_pspnet_r101/checkpoints/best.pth',
    model={k: v for k, v in load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'nyu', 'seg40',
                                                 'teacher_pspnet_r101.py'))['model'].items() if k != 'pretrained'},
)
