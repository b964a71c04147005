# NYU-Depth v2 40-class segmentation on the 795 labelled training frames: 20k iterations of a global batch of 8
# (~200 epochs), SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly 0.9 per iteration; validation on the 654
# test frames every 2000 iterations.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='poly', power=0.9, by_epoch=False)
train = dict(iters=20000, eval_interval=2000, checkpoint_interval=2000, log_interval=50)
data = dict(batch_size=8)
