# CRD: Tian et al., ICLR 2020. NCE with 16384 negatives from other classes, memory momentum 0.5,
# temperature 0.07, 128-d embeddings; -r 1 -a 0 -b 0.8. The train set yields sample and contrast indices.
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=128, nce_k=16384, nce_t=0.07,
                nce_m=0.5, weight=0.8)]
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=16384, mode='exact', sampling='class',
                       dataset=dict(type='CIFAR100', root='data/cifar100', split='train')))
