# KDCL-Linear with resnet56 + wrn_16_2 (10% of the training images held out for the weights).
_base_ = ['./resnet56_wrn_16_2_minlogit.py']
data = dict(train=dict(dataset=dict(_delete_=True, type='HoldoutSplit', holdout=0.1, seed=0,
                                    dataset=dict(type='CIFAR100', root='data/cifar100', split='train'))))
strategy = dict(rule='linear')
