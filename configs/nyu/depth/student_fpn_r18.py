# Depth student baseline: FPN-ResNet18 trained alone with the teacher's recipe (literature: abs_rel 0.165,
# rmse 0.533, delta1 0.785 from ImageNet weights).
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_raw.py',
          '../../_base_/schedules/nyu_depth_20e.py', '../../_base_/models/depth_fpn_r18.py']
