# KDCL-General: sum_i w_i z_i with the weights of the generalisation-error estimate on the held-out 10%
# (error correlations C_ij of softmax(z) - onehot(y); w = C^-1 1 / 1^T C^-1 1), refitted every epoch.
_base_ = ['./resnet32_resnet32_linear.py']
strategy = dict(rule='general')
