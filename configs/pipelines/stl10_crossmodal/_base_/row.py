# The shared stages of one row of the STL-10 cross-modal table (L -> ab); each row file names its stage-2
# config (`stages = dict(pretrain=dict(config=...))` merges into the stage below; see densekd/pipelines/spec.py).
#
#   teacher   the L classifier (WRN-16-2, 1 channel) on the 5,000 labelled training images, scored on test. To
#             start it from another L network (e.g. one trained on ImageNet's lightness), add to this stage
#             cfg_options={'load_from': dict(path='/path/to/L_net.pth', exclude=['fc'])} (exclude a head of
#             another size; strict=False loads every weight whose name and shape fit).
#   pretrain  the ab student (WRN-16-2, 2 channels) taught by the L teacher on the 105,000 train + unlabelled
#             images, no labels (configs/stl10/crossmodal/ab_<method>.py); last.pth.
#   probe     linear probe of its pooled penultimate features (feats[-1]) on the labelled train split, scored on
#             test (configs/stl10/crossmodal/ab_probe.py; linear_probe_top1 in probe/probe_summary.json).
#   finetune  a new head, the encoder from the pretrain checkpoint at a tenth of the head's rate
#             (configs/stl10/crossmodal/ab_finetune.py; top1 in finetune/summary.json).
#
#   python tools/pipeline.py configs/pipelines/stl10_crossmodal/crd.py [--synthetic] [--data-root DIR] [--seed S]
#   python tools/pipeline_table.py stl10_crossmodal        # the table over rows and seeds
stages = dict(
    teacher=dict(config='configs/stl10/wrn_16_2_L.py'),
    pretrain=dict(cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    probe=dict(kind='probe', config='configs/stl10/crossmodal/ab_probe.py', checkpoint='{pretrain.last}'),
    finetune=dict(config='configs/stl10/crossmodal/ab_finetune.py', cfg_options={'load_from.path': '{pretrain.last}'}),
)
