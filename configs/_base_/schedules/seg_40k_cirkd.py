# CIRKD's Cityscapes schedule (winycg/CIRKD train_baseline.py / train_kd.py defaults): 40k iterations of
# batch 16 (global), SGD lr 0.02, momentum 0.9, weight decay 1e-4, poly 0.9 per iteration.
_base_ = ['./seg_40k.py']
optimizer = dict(lr=0.02, weight_decay=1e-4)
data = dict(batch_size=16)
