# ImageNet classification with CRD's 100-epoch recipe: the base of the teacher, the student and the distillations.
_base_ = ['./default_runtime.py', './datasets/imagenet.py', './schedules/imagenet_100e.py']
