# Supervised monocular depth on NYU-Depth v2 raw frames (BTS / AdaBins-style): AdamW lr 1e-4, weight decay
# 1e-2, 500 warm-up iterations then poly 0.9 per iteration, 20 epochs of the ~24k-frame training list at a
# global batch of 8 (the task, SILog with variance focus 0.85, and the Eigen-crop evaluation come from the dataset base).
optimizer = dict(type='AdamW', lr=1e-4, weight_decay=1e-2)
lr_schedule = dict(type='poly', power=0.9, by_epoch=False, warmup_iters=500, warmup_ratio=0.1)
train = dict(epochs=20, eval_interval=1, log_interval=50)
data = dict(batch_size=8)
