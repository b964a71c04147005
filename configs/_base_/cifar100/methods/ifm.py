# IFM: Passalis, Tzelepi & Tefas, CVPR 2020 ("Heterogeneous Knowledge Distillation using Information Flow
# Modeling"). Jeffreys divergence between the cosine-kernel conditional distributions of the batch at the three
# stage outputs and the pooled embedding (feats[1:], taps paired in order); the embedding has weight 1, the
# stages alpha_init * gamma^epoch = 100 * 0.7^epoch (the authors' CIFAR-10 script). CE weight 1 (-r 1). Term
# weight 15000 is our choice: the authors train by the transfer loss alone (Adam) and publish no CIFAR-100
# weight; Jeffreys ~ 2 KL for close distributions, so 15000 gives the embedding term PKT's RepDistiller strength
# (30000 x KL; measured: equal gradient norms at initialisation).
distill = [dict(type='IFM', student='feats[1:]', teacher='feats[1:]', alpha_init=100, gamma=0.7, kernel='cosine',
                weight=15000)]
