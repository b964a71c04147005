# Multi-task student baseline on NYU-Depth v2: one FPN-ResNet18 encoder shared by a 40-class segmentation
# branch and a depth branch, trained on the 795 labelled frames with both losses (CE + SILog, weights 1 and 1);
# best.pth by mIoU (task.primary_metric='abs_rel' to choose by depth instead).
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/nyu_seg40.py',
          '../../_base_/schedules/nyu_seg_20k.py']
model = dict(type='multitask_model', arch='FPN', encoder='resnet18', num_classes=40, max_depth=10.0)
task = dict(_delete_=True, type='multitask', primary_metric='mIoU', weights=dict(seg=1.0, depth=1.0),
            tasks=dict(seg=dict(type='segmentation', num_classes=40, target_key='label', aux_weight=0.0),
                       depth=dict(type='depth', target_key='depth', loss='silog', eval_crop='eigen')))
optimizer = dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-2)
