# The PSPNet-R101 Cityscapes teacher, as trained by configs/cityscapes/pspnet_r101_teacher.py.
# `teacher.model` is read from that config (not copied), so the distilled teacher is always the network the
# teacher config trains; its best checkpoint lands in the config's default work dir. A missing checkpoint
# stops training with the command that trains it (with --synthetic the teacher stays random, with a warning).
# Use another checkpoint with --cfg-options teacher.checkpoint=PATH.
import os.path as osp

from densekd.config import load_config

teacher = dict(
    config='configs/cityscapes/pspnet_r101_teacher.py',
    checkpoint='work_dirs/cityscapes/pspnet_r101_teacher/checkpoints/best.pth',
    # the checkpoint replaces every weight, so an ImageNet `pretrained` path of the teacher config is dropped
    model={k: v for k, v in load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'cityscapes',
                                                 'pspnet_r101_teacher.py'))['model'].items()
           if k != 'pretrained'},
)
