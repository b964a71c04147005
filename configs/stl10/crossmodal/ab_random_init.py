# STL-10 L -> ab, the random-init row: the ab student of configs/_base_/stl10/crossmodal_pretrain.py WITHOUT any
# transfer (no teacher, no terms). Zero epochs: the run writes checkpoints/last.pth with the network's initial
# weights (seeded by `seed`), which the probe and fine-tune stages read like any distilled checkpoint.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/stl10_lab.py']
student_input = 'ab'
model = dict(type='wrn_16_2', num_classes=10, in_channels=2)
optimizer = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)
train = dict(epochs=0)
