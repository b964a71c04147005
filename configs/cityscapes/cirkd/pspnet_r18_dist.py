# DIST in CIRKD's setting with a PSPNet-R18 student (hunto/DIST_KD train_scripts/train_kd/pspnet_res18.sh;
# DIST: 76.31 mIoU): DeepLabV3-R101 teacher, the same DenseDIST term and weight decay as deeplabv3_r18_dist.py.
_base_ = ['./pspnet_r18_baseline.py', '../../_base_/models/teacher_deeplabv3_r101.py']
optimizer = dict(weight_decay=5e-4)
distill = [dict(type='DenseDIST', student='segmentation_head.0', teacher='segmentation_head.0', beta=1.0, gamma=1.0,
                T=1.0, weight=1.0)]
