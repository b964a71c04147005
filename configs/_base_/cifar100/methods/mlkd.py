# MLKD: Jin, Wang & Lin, CVPR 2023, "Multi-Level Logit Distillation" (Jin-Ying/Multi-Level-Logit-Distillation).
# Each image as a weak view (crop + flip: batch['image']) and a strong view (crop + flip + RandAugment(2) +
# Cutout: batch['image_strong'], from StrongAugmentView); instance-level KD at temperatures 4, 3, 5, 2, 6 on both
# views, batch-level (B x B Gram) and class-level (C x C correlation) alignment on the weak view, scaled by the
# release's confidence masks. The release's weights are mdistiller's KD defaults, which its configs keep: CE 0.1
# on each view (task_weight for the weak one, the ViewCE term for the strong one), MLKD 0.9; SGD lr 0.025,
# batch 64, wd 5e-4, 240 epochs, x0.1 at 150/180/210 (configs/cifar100/ours/*.yaml).
# Published: resnet32x4 -> resnet8x4 77.08 top-1.
task_weight = 0.1
distill = [dict(type='MLKD', temperatures=[4.0, 3.0, 5.0, 2.0, 6.0], view='image_strong', weight=0.9),
           dict(type='ViewCE', view='image_strong', weight=0.1)]
data = dict(train=dict(_delete_=True, type='StrongAugmentView', key='image_strong',
                       dataset=dict(type='CIFAR100', root='data/cifar100', split='train')))
optimizer = dict(lr=0.025)
