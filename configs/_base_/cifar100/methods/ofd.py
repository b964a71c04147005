# OFD: Heo et al., ICCV 2019. Margin-ReLU teacher, partial L2 on pre-ReLU stage outputs (sum / batch / 1000
# inside the loss, weight 1 as the OFD CIFAR code). Teacher margins from the BN before each tapped ReLU
# (beta, |gamma|), as RepDistiller's get_bn_before_relu; drop teacher_bn to estimate them from features.
distill = [dict(type='OFD', student='preacts[1:-1]', teacher='preacts[1:-1]', weight=1, teacher_bn='bn_before_relu')]
