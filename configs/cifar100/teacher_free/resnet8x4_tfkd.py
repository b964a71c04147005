# Teacher-free KD (Tf-KD_reg, Yuan et al., CVPR 2020): resnet8x4 regularised by a hand-designed virtual
# teacher (0.99 on the true class), no teacher network. The authors' CIFAR-100 setting: T=20,
# multiplier 100, reg_alpha 0.1 (CE x 0.9 + virtual-teacher KL x 0.1). Schedule and data as the resnet8x4
# student baseline (CRD's recipe), so the two compare directly.
_base_ = ['../students/resnet8x4.py']
task_weight = 0.9
distill = [dict(type='LabelSmoothingKD', T=20.0, correct_prob=0.99, multiplier=100.0, weight=0.1)]
