# Demo teacher: PSPNet-ResNet34 cut after its second stage (stride-8 features) with a 128-channel pyramid-
# pooling head -- twice the student's depth in those stages, twice its head width -- and trained longer.
_base_ = ['./_base_/synthetic.py', '../../_base_/models/pspnet_r18.py']
model = dict(encoder='resnet34', encoder_depth=3, psp_out_channels=128, aux_head=False)
train = dict(iters=800, eval_interval=800, checkpoint_interval=800)
