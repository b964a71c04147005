# DeepInversion for a segmentation teacher (our extension: the paper inverts classifiers): images for the demo's
# PSPNet-ResNet18 teacher (configs/cityscapes/demo/teacher.py, 64 x 128 synthetic street scenes) from its BatchNorm
# statistics and the image priors alone -- no class target (labels=None, ce=0), so the images carry no labels and
# the student learns from the teacher's per-pixel predictions (configs/cityscapes/data_free/demo_student_pixelwise.py).
# Settings: the release's ImageNet script (imagenet_inversion.py / deepinversion.py, setting 1: 2000 full-resolution
# steps, Adam lr 0.25 with betas (0.5, 0.9), lr_cosine_policy with 100 warm-up steps, clipping to the pixel range,
# flips, the lowest-loss images kept; r_feature 0.01, first_bn_multiplier 10, tv_l2 1e-4, l2 1e-5) with the jitter
# scaled from 30 px at 224 to 9 px at the frames' 64-pixel height. 200 images (the demo's training-set size) in
# batches of 50: our choice. ImageNet normalisation, as the demo's data.
_base_ = ['../../cityscapes/demo/_base_/synthetic.py']
import os.path as osp

from densekd.config import load_config

synthesis = dict(
    method='deepinversion',
    loss=dict(ce=0.0, bn=0.01, first_bn_multiplier=10.0, tv_l2=1e-4, tv_l1=0.0, l2=1e-5),
    teacher=dict(config='configs/cityscapes/demo/teacher.py',
                 checkpoint='work_dirs/cityscapes/demo/teacher/checkpoints/best.pth',
                 model=load_config(osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'cityscapes', 'demo',
                                            'teacher.py'))['model']),
    labels=None, num_images=200, batch_size=50, iterations=2000,
    optimizer=dict(lr=0.25, betas=(0.5, 0.9), eps=1e-8), lr_schedule=dict(type='cosine', warmup_iters=100),
    jitter=9, flip=True, clip=True, keep='best',
    image_size=(64, 128), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    seed=0, checkpoint_interval=100, log_interval=100,
)
