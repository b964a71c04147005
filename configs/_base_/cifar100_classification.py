# CIFAR-100 classification with the 240-epoch recipe: the base of teachers and students.
_base_ = ['./default_runtime.py', './datasets/cifar100.py', './schedules/cifar100_240e.py']
