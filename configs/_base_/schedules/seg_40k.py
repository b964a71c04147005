# The structured-KD (Liu et al., CVPR 2019) Cityscapes schedule: 40k iterations of batch 8 (global),
# SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly decay (1 - iter/40000)^0.9 per iteration, no warm-up.
# Validation and checkpoints every 4000 iterations.
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='poly', power=0.9, by_epoch=False)
train = dict(iters=40000, eval_interval=4000, checkpoint_interval=4000, log_interval=50)
data = dict(batch_size=8)
