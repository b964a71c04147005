# Cross-modal stage 3 for the HHA student: NYU-40 segmentation with a head on frozen HHA features (the encoder
# from the stage-2 checkpoint via model.pretrained; without it, the random-init row).
_base_ = ['../seg_probe.py']
student_input = 'hha'
model = dict(in_channels=3)
data = dict(train=dict(hha='hha'), val=dict(hha='hha'))
