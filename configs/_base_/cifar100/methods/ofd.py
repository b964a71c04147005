# OFD: Heo et al., ICCV 2019. Margin-ReLU teacher, partial L2 on pre-ReLU stage outputs (sum / batch / 1000
# inside the loss, weight 1 as the OFD CIFAR code). Teacher margins estimated from its features.
distill = [dict(type='OFD', student='preacts[1:-1]', teacher='preacts[1:-1]', weight=1)]
