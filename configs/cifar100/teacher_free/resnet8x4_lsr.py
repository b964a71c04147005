# Label smoothing regularisation (LSR; Szegedy et al., CVPR 2016), the regulariser Tf-KD (Yuan et al., CVPR
# 2020) relates KD to: resnet8x4 trained alone with cross-entropy on labels smoothed by epsilon = 0.1.
# Schedule and data as the resnet8x4 student baseline (CRD's recipe).
_base_ = ['../students/resnet8x4.py']
task = dict(label_smoothing=0.1)
