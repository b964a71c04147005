# A classifier on the STL-10 lightness view alone: WRN-16-2 with a 1-channel first convolution reads
# batch['L'] (64 x 64 crops, see configs/_base_/datasets/stl10_lab.py) and learns the 10 classes from the 5,000
# labelled training images. configs/stl10/wrn_16_2_ab.py is the same on the chromaticity view. Either is a
# natural teacher for the other view (L -> ab transfer) or the judge of a view's features.
_base_ = ['../_base_/default_runtime.py', '../_base_/datasets/stl10_lab.py']
task = dict(_delete_=True, type='classification')
student_input = 'L'
model = dict(type='wrn_16_2', num_classes=10, in_channels=1)
data = dict(
    train=dict(split='train'),
    val=dict(type='STL10', root='data/stl10', split='test', keys=('L', 'ab'), size=64),
    batch_size=64, val_batch_size=256)
optimizer = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='cosine', by_epoch=False)
train = dict(epochs=100, eval_interval=10, log_interval=20)
