# The CRD / RepDistiller CIFAR-100 recipe: 240 epochs, SGD momentum 0.9, lr 0.05,
# x0.1 at epochs 150/180/210, weight decay 5e-4 (batch 64 in the dataset base).
optimizer = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='multistep', milestones=[150, 180, 210], gamma=0.1, by_epoch=True)
train = dict(epochs=240, eval_interval=1)
