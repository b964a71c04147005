# STL-10 L -> ab cross-modal table, row 'random_init': no teacher, no transfer; the probe and the fine-tuning of an
# UNTRAINED ab network (configs/stl10/crossmodal/ab_random_init.py writes its initial weights, seeded by --seed).
_base_ = ['./_base_/row.py']
stages = dict(teacher=None, pretrain=dict(config='configs/stl10/crossmodal/ab_random_init.py', cfg_options=None))
