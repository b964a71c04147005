# Adaptive DeepInversion (Yin et al., CVPR 2020): DeepInversion plus the competition term adi * (1 - JS(teacher,
# student)), weight 0.2 (the value of the paper's ADI experiments, the release's README), temperature 3 (the
# release's), against the resnet8x4 student distilled on the DeepInversion images
# (configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py). Departure: the student is fixed during the
# synthesis (as the release's ImageNet script's competitor), not trained between rounds.
_base_ = ['./deepinversion_resnet32x4.py']
synthesis = dict(
    loss=dict(adi=0.2, adi_T=3.0),
    student=dict(model=dict(type='resnet8x4', num_classes=100),
                 checkpoint='work_dirs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion/checkpoints/best.pth',
                 config='configs/cifar100/data_free/resnet32x4-resnet8x4/kd_deepinversion.py'),
)
