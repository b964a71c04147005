# The HHA student's random-init row: the segmentation head on frozen random HHA features, then fine-tuning.
stages = [
    dict(name='probe', config='configs/nyu/crossmodal/hha/seg_probe.py'),
    dict(name='finetune', config='configs/nyu/crossmodal/hha/seg_finetune.py',
         cfg_options={'load_from': '{probe.best}'}),
]
