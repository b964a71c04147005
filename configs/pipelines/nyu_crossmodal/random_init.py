# CRD's NYU-Depth v2 cross-modal table, row 'random init': the depth network without any transfer -- the
# segmentation head on frozen RANDOM features (probe), then full fine-tuning from there.
stages = [
    dict(name='probe', config='configs/nyu/crossmodal/seg_probe.py'),
    dict(name='finetune', config='configs/nyu/crossmodal/seg_finetune.py',
         cfg_options={'load_from': '{probe.best}'}),
]
