# The classifier of configs/stl10/wrn_16_2_L.py on the chromaticity view: WRN-16-2 with a 2-channel first
# convolution reads batch['ab'] (the a and b channels of the same crops).
_base_ = ['./wrn_16_2_L.py']
student_input = 'ab'
model = dict(in_channels=2)
