# The depth teacher: FPN-ResNet101 trained on the raw NYU-Depth v2 frames (configs/_base_/datasets/nyu_raw.py).
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_raw.py',
          '../../_base_/schedules/nyu_depth_20e.py', '../../_base_/models/depth_fpn_r101.py']
