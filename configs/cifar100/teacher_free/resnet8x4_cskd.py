# Class-wise self-KD (CS-KD, Yun et al., CVPR 2020): resnet8x4 matches its own softened predictions (T=4) on
# a random class-mate of each sample (computed without gradient), lambda_cls = 1. The training set yields
# each sample with a class-mate's image (ClassPairDataset); batch 64 anchors + 64 partners is the authors'
# 128. Schedule and data as the resnet8x4 student baseline (CRD's recipe), so the two compare directly.
_base_ = ['../students/resnet8x4.py']
data = dict(train=dict(_delete_=True, type='ClassPairDataset',
                       dataset=dict(type='CIFAR100', root='data/cifar100', split='train')))
distill = [dict(type='CSKD', T=4.0, weight=1.0)]
