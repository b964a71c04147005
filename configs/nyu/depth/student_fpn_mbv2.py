# Depth student baseline: FPN-MobileNetV2 trained alone with the teacher's recipe.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_raw.py',
          '../../_base_/schedules/nyu_depth_20e.py', '../../_base_/models/depth_fpn_mbv2.py']
