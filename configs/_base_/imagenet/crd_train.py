# CRD's training set on ImageNet: each sample also carries its index (its row of the two memory banks of
# 1,281,167 x 128: 1.31 GB in float32 on the training device and in every checkpoint; 0.66 GB with
# distill.N.memory_dtype='float16') and 16384 negatives from the other classes (exact positives), as the CIFAR
# recipe. Compose after a method base that sets data.train to CRDSampleDataset (cifar100/methods/crd*.py).
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=16384, mode='exact', sampling='class',
                       dataset=dict(type='ImageNet', root='data/imagenet', split='train', size=224, decode='pil')))
