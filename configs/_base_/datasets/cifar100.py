# CIFAR-100 from the official python pickles under data/cifar100/cifar-100-python/.
task = dict(type='classification')
data = dict(
    train=dict(type='CIFAR100', root='data/cifar100', split='train'),
    val=dict(type='CIFAR100', root='data/cifar100', split='test'),
    batch_size=64,          # global batch; split across processes under torchrun
    val_batch_size=256,
    num_workers=4,
)
