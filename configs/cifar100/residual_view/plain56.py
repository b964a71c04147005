# A deeper plain student: resnet56 without skip connections, trained alone (He et al. report plain-56 worse
# than plain-20 on CIFAR: the degradation problem).
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='resnet56', num_classes=100, skip=False)
