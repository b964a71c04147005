# CRD's NYU-Depth v2 cross-modal table, row 'kd_at': RGB teacher -> depth student (configs/nyu/crossmodal/
# depth_kd_at.py, no labels) -> NYU-40 segmentation on frozen features (probe) -> full fine-tuning.
# Run seeds with --seed S; tools/crossmodal_table.py prints the table.
stages = [
    dict(name='teacher', config='configs/nyu/crossmodal/rgb_teacher.py'),
    dict(name='pretrain', config='configs/nyu/crossmodal/depth_kd_at.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    dict(name='probe', config='configs/nyu/crossmodal/seg_probe.py',
         cfg_options={'model.pretrained': '{pretrain.last}'}),
    dict(name='finetune', config='configs/nyu/crossmodal/seg_finetune.py',
         cfg_options={'load_from': '{probe.best}'}),
]
