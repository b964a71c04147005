# The residual view of KD: resnet20 WITHOUT skip connections (model.skip=False: a plain 20-layer CNN with the
# residual network's layers, minus the projection shortcuts), trained alone on CIFAR-100 (the 240-epoch recipe).
# Compare with plain20_kd.py (the same student taught by the residual resnet56) and with the residual resnet20
# (configs/cifar100/students/resnet20.py); the deeper plain56*.py pair shows the depth at which plain nets
# stop training well alone.
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='resnet20', num_classes=100, skip=False)
