# NYU-40 segmentation teacher: PSPNet-ResNet101 (output stride 8, auxiliary head), ImageNet weights with
# model.pretrained=/path/to/resnet101.pth.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py',
          '../../_base_/schedules/nyu_seg_20k.py', '../../_base_/models/pspnet_r101.py']
model = dict(num_classes=40)
