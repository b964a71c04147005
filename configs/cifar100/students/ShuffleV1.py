# Student baseline: ShuffleV1 on CIFAR-100; lr 0.01 as in the CRD recipe for MobileNet/ShuffleNet.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/cifar100.py',
          '../../_base_/schedules/cifar100_240e_lr001.py']
model = dict(type='ShuffleV1', num_classes=100)
