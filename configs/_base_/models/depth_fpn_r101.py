# Depth teacher: FPN decoder on a ResNet-101 encoder, one output channel, depth = 10 * sigmoid (metres).
# Start it from ImageNet weights with model.pretrained=/path/to/resnet101.pth (nothing is downloaded).
model = dict(type='depth_model', arch='FPN', encoder='resnet101', max_depth=10.0)
