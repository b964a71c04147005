# The FPN-R101 depth teacher as trained by configs/nyu/depth/teacher_fpn_r101.py (its model read from that
# config, its best checkpoint from the config's default work dir; --cfg-options teacher.checkpoint=PATH).
import os.path as osp

from densekd.config import load_config

teacher = dict(
    config='configs/nyu/depth/teacher_fpn_r101.py',
    checkpoint='work_dirs/nyu/depth/teacher_fpn_r101/checkpoints/best.pth',
    model={k: v for k, v in load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'nyu', 'depth',
                                                 'teacher_fpn_r101.py'))['model'].items() if k != 'pretrained'},
)
