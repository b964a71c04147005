# ReviewKD: Chen, Liu, Zhao & Jia, CVPR 2021, "Distilling Knowledge via Knowledge Review". Attention-based fusion
# of the student's levels from the deepest up (mid width min(512, deepest student width)), hierarchical context
# loss against the teacher's levels: the student's stage outputs after the ReLU plus the pooled vector
# (feats[1:]) and the teacher's stage outputs before the ReLU plus the pooled vector (preacts[1:]), as the
# authors' CIFAR-100 release and mdistiller. Review loss warmed up linearly over 20 epochs, CE weight 1.
# The term weight is per pair (the release's script/reviewKD.sh --kd-loss-weight): 5 for resnet32x4 -> resnet8x4
# (also mdistiller's REVIEWKD_WEIGHT: 5.0), wrn_40_2 -> wrn_16_2 and wrn_40_2 -> wrn_40_1; 0.6 for resnet56 ->
# resnet20; 1 for resnet110 -> resnet32; the script has no resnet110 -> resnet20 or vgg13 -> vgg8 run, whose
# configs keep this base's 1 (the release's and mdistiller's default weight). The optimiser is the CRD recipe
# (SGD lr 0.05, batch 64, wd 5e-4), as mdistiller's reviewkd.yaml; the authors' own script uses batch 128, lr 0.1,
# Nesterov. Published: resnet32x4 -> resnet8x4 75.63 top-1.
task_weight = 1.0
distill = [dict(type='ReviewKD', student='feats[1:]', teacher='preacts[1:]', warmup=20, weight=1.0)]
