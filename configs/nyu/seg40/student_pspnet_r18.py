# NYU-40 segmentation student baseline: PSPNet-ResNet18 with the teacher's recipe.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py',
          '../../_base_/schedules/nyu_seg_20k.py', '../../_base_/models/pspnet_r18.py']
model = dict(num_classes=40)
