# Structured-KD ablation: pixel-wise + pair-wise + holistic -- identical to configs/seg_pspnet_kd.py (listed
# here so the ablation row has its own work dir).
_base_ = ['../seg_pspnet_kd.py']
