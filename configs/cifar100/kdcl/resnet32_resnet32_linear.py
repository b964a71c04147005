# KDCL-Linear: the teacher is sum_i w_i z_i, the weights refitted at the start of every epoch to minimise the
# ensemble's cross-entropy on 10% of the training images held out (HoldoutSplit, seed 0: 5,000 images never
# trained on, predicted without augmentation); the students train on the other 45,000.
_base_ = ['./resnet32_resnet32_minlogit.py']
data = dict(train=dict(dataset=dict(_delete_=True, type='HoldoutSplit', holdout=0.1, seed=0,
                                    dataset=dict(type='CIFAR100', root='data/cifar100', split='train'))))
strategy = dict(rule='linear')
