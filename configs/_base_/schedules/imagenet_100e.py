# CRD's ImageNet recipe (Tian et al., ICLR 2020, Table 3): "the standard training practice of ImageNet on PyTorch
# except that we train for 10 more epochs" -- 100 epochs of SGD, momentum 0.9, lr 0.1 for the global batch of
# 256 (dataset base), x0.1 at epochs 30, 60 and 90, weight decay 1e-4 (applied to every parameter, as the
# PyTorch example).
optimizer = dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
lr_schedule = dict(type='multistep', milestones=[30, 60, 90], gamma=0.1, by_epoch=True)
train = dict(epochs=100, eval_interval=1, log_interval=100)
