_base_ = ['../../../_base_/cifar100/pairs/vgg13-vgg8.py', '../../../_base_/cifar100/methods/ft.py']
strategy = dict(init_lr=0.05)  # RepDistiller uses the main lr for the paraphraser of non-ResNet/WRN students
