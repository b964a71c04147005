# Demo student, trained alone: PSPNet-ResNet18 cut after its second stage (encoder_depth=3: stride-8
# features, no layer3/layer4) with a 64-channel pyramid-pooling head and no dropout.
_base_ = ['./_base_/synthetic.py', '../../_base_/models/pspnet_r18.py']
model = dict(aux_head=False, encoder_depth=3, output_stride=8, psp_out_channels=64, psp_dropout=0.0)
