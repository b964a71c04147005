# CIRKD with a PSPNet-R18 student (winycg/CIRKD train_scripts/train_cirkd/citys/pspnet_res18.sh; CIRKD: 72.55 ->
# 74.73 mIoU): DeepLabV3-R101 teacher, the terms of deeplabv3_r18_cirkd.py on the features before the classifier
# ('decoder': the 512-channel block after the pyramid pooling, see pspnet_r18_baseline.py).
_base_ = ['./pspnet_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py',
          '../../_base_/cityscapes/cirkd_methods/cirkd.py']
