# KDCL-Naive: per sample, the teacher is the logits of the student with the lowest cross-entropy.
_base_ = ['./resnet32_resnet32_minlogit.py']
strategy = dict(rule='naive')
