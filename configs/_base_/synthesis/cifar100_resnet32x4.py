# Synthesis from the resnet32x4 teacher of CRD's Table 1 (configs/cifar100/teachers/resnet32x4.py), 32 x 32 images in
# CIFAR-100's normalisation. Optimisation: the "paper parameters" of DeepInversion's CIFAR-10 script
# (NVlabs/DeepInversion cifar10/README.md: --bs=256 --di_lr=0.05, its defaults --iters_mi=2000, Adam with default
# betas, constant learning rate, jitter 2 px, no flip, no clipping, the images after the last step). 50,000 images
# (CIFAR-100's training-set size) is our choice. data.train only calibrates a randomly initialised teacher's
# BatchNorm statistics under --synthetic (and is what tools/bn_similarity.py scores as 'train').
_base_ = ['../datasets/cifar100.py']
synthesis = dict(
    teacher=dict(model=dict(type='resnet32x4', num_classes=100),
                 checkpoint='work_dirs/cifar100/teachers/resnet32x4/checkpoints/best.pth',
                 config='configs/cifar100/teachers/resnet32x4.py'),
    num_images=50000, batch_size=256, iterations=2000,
    optimizer=dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8), lr_schedule=dict(type='constant'),
    jitter=2, flip=False, clip=False, keep='last',
    image_size=32, mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
    labels='balanced', seed=0, checkpoint_interval=100, log_interval=100,
)
