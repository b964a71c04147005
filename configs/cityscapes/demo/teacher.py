# Demo teacher: PSPNet-ResNet18 cut after its second stage, dilated to output stride 4 (its pyramid pooling and
# classifier see 16 x 32 cells of the 64 x 128 frame, the student 8 x 16), with a 128-channel pyramid-pooling
# head (the student's: 64), and trained longer (800 iterations vs 600).
_base_ = ['./_base_/synthetic.py', '../../_base_/models/pspnet_r18.py']
model = dict(encoder='resnet18', encoder_depth=3, output_stride=4, psp_out_channels=128, aux_head=False)
train = dict(iters=800, eval_interval=800, checkpoint_interval=800)
