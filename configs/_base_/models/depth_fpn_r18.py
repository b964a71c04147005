# Depth student: FPN decoder on a ResNet-18 encoder (the student of the depth-distillation literature:
# abs_rel 0.165 alone on NYU-Depth v2, 0.155 with spatial KD). ImageNet weights: model.pretrained=PATH.
model = dict(type='depth_model', arch='FPN', encoder='resnet18', max_depth=10.0)
