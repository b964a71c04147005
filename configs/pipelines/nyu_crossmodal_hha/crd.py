# CRD's NYU cross-modal experiment with an HHA student (row 'crd'): RGB teacher -> HHA student distilled by CRD
# on the unlabelled RGB-HHA pairs -> NYU-40 segmentation on frozen HHA features -> full fine-tuning.
# Needs ROOT/hha (python tools/make_hha.py ROOT). tools/crossmodal_table.py prints the table.
stages = [
    dict(name='teacher', config='configs/nyu/crossmodal/rgb_teacher.py'),
    dict(name='pretrain', config='configs/nyu/crossmodal/hha/depth_crd.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    dict(name='probe', config='configs/nyu/crossmodal/hha/seg_probe.py',
         cfg_options={'model.pretrained': '{pretrain.last}'}),
    dict(name='finetune', config='configs/nyu/crossmodal/hha/seg_finetune.py',
         cfg_options={'load_from': '{probe.best}'}),
]
