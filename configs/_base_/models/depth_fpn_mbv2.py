# Depth student: FPN decoder on a MobileNetV2 encoder. ImageNet weights: model.pretrained=PATH.
model = dict(type='depth_model', arch='FPN', encoder='mobilenet_v2', max_depth=10.0)
