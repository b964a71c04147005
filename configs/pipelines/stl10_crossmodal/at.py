# STL-10 L -> ab cross-modal table, row 'at': attention transfer; teacher -> pretrain -> probe -> finetune, the stages
# of ./_base_/row.py. Run seeds with --seed S, then python tools/pipeline_table.py stl10_crossmodal.
_base_ = ['./_base_/row.py']
stages = dict(pretrain=dict(config='configs/stl10/crossmodal/ab_at.py'))
