# Cross-modal stage 4 for the HHA student: full fine-tuning from the probe's best checkpoint (load_from).
_base_ = ['./seg_probe.py']
freeze = None
optimizer = dict(lr=0.005)
