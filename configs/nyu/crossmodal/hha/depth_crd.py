# Cross-modal stage 2 with a 3-channel HHA student (horizontal disparity, height above ground, angle to
# gravity; Gupta et al., ECCV 2014) instead of the 1-channel depth map: the same CRD recipe, the student reads
# batch['hha'] (ROOT/hha/0001.png ..., written by `python tools/make_hha.py ROOT`; or hha='compute' to derive it
# on the fly from the in-painted depths with densekd's encoding, see densekd/data/hha.py).
_base_ = ['../depth_crd.py']
student_input = 'hha'
model = dict(in_channels=3)
data = dict(train=dict(dataset=dict(hha='hha')))
