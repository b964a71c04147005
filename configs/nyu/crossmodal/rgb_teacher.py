# Cross-modal transfer (CRD, Tian et al., ICLR 2020, NYU-Depth v2 RGB -> depth), stage 1: the RGB teacher, a
# torchvision ResNet-18 classifier. With real data start it from ImageNet (model.pretrained=/path/to/
# resnet18-f37072fd.pth, torchvision's file; nothing is downloaded); it is then fine-tuned on an image-level view
# of the labelled frames: each frame's label is its dominant NYU-40 class other than wall, floor and ceiling
# (DominantClassDataset), which gives the teacher 40 logits for KD. On --synthetic it learns that view from
# scratch on the synthetic rooms.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py']
_structural = [0, 1, 21]  # wall, floor, ceiling in NYU-40
task = dict(_delete_=True, type='classification')
model = dict(type='tv_resnet18', num_classes=40)
data = dict(
    train=dict(_delete_=True, type='DominantClassDataset', exclude=_structural,
               dataset=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='train', target='label',
                            crop_size=(416, 544), scale_range=(1.0, 1.5), flip=True)),
    val=dict(_delete_=True, type='DominantClassDataset', exclude=_structural,
             dataset=dict(type='NYUDepthV2', root='data/nyu_depth_v2', split='test', target='label')),
    batch_size=16, val_batch_size=16)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4)
lr_schedule = dict(type='cosine', by_epoch=False)
train = dict(epochs=60, eval_interval=10, log_interval=20)
