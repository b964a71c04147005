# The first link of a teacher-assistant chain (densekd.pipelines.chains.kd_chain): a CIFAR-100 model trained
# alone with the benchmark's 240-epoch recipe; the chain sets model.type.
_base_ = ['../../_base_/cifar100_classification.py']
model = dict(type='resnet110', num_classes=100)
