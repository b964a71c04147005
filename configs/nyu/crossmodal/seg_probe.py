# Stage 3: the depth student judged by NYU-40 segmentation with a head on FROZEN features: an FPN-R18 whose
# 1-channel ResNet-18 encoder comes from the stage-2 checkpoint (model.pretrained, torchvision keys; its
# classifier is dropped) and stays fixed (freeze, BatchNorm statistics included); only the decoder and the
# classifier train. Without model.pretrained this is the random-init row.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py',
          '../../_base_/schedules/nyu_seg_20k.py']
student_input = 'depth'
model = dict(type='seg_model', arch='FPN', encoder='resnet18', num_classes=40, in_channels=1)
freeze = ['encoder']
train = dict(iters=10000, eval_interval=2000, checkpoint_interval=2000)
