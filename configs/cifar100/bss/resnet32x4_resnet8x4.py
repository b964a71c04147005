# BSS distillation resnet32x4 -> resnet8x4 on CIFAR-100 with the benchmark's 240-epoch recipe (batch 64, SGD lr
# 0.05, x0.1 at 150/180/210); the release's own recipe is 80 epochs of batch 256 on CIFAR-10 (lr 0.1, /10 at
# 40 and 60, weight decay 1e-4). The teacher comes from configs/cifar100/teachers/resnet32x4.py.
_base_ = ['../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py', '../../_base_/cifar100/strategies/bss.py']
