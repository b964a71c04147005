# Data-free KD, CRD's resnet32x4 -> resnet8x4 pair: the student never sees a real training image; it learns from the
# teacher's predictions on the 50,000 images inverted from the teacher by DeepInversion
# (configs/synthesis/cifar100/deepinversion_resnet32x4.py: python tools/synthesize.py it first, or run
# configs/pipelines/cifar100_deepinversion_resnet32x4_resnet8x4.py) and is evaluated on the real CIFAR-100 test set.
# KD alone (T 4, the zoo's KD temperature, weight 1; task_weight 0: the images' classes are what the teacher was asked
# for, not labels) with CIFAR's crop + flip on the stored images and the 240-epoch CRD schedule -- our choices.
_base_ = ['../../../_base_/cifar100/pairs/resnet32x4-resnet8x4.py']
task_weight = 0.0
distill = [dict(type='KD', T=4, weight=1.0)]
data = dict(train=dict(_delete_=True, type='SynthesizedImages',
                       path='work_dirs/synthesis/cifar100/deepinversion_resnet32x4/images.h5'))
