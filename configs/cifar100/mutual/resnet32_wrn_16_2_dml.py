# Deep mutual learning of two different networks (a resnet32 and a wrn_16_2): every student is evaluated
# on its own (summary.json: models.student, models.peer1). Lists replace, so `peers` is the new list.
_base_ = ['./resnet32_resnet32_dml.py']
strategy = dict(peers=[dict(type='wrn_16_2', num_classes=100)])
