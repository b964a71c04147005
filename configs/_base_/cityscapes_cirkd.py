# CIRKD's Cityscapes setting: 40k iterations of batch 16, 512 x 1024 crops, SGD lr 0.02 poly 0.9, wd 1e-4.
_base_ = ['./default_runtime.py', './datasets/cityscapes.py', './schedules/seg_40k_cirkd.py']
data = dict(train=dict(crop_size=(512, 1024)))
