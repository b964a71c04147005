# CRD Table 4, probe-only: the WRN-16-2 students of CIFAR-100
# (configs/cifar100/students/wrn_16_2.py, configs/cifar100/distill/wrn_40_2-wrn_16_2/*.py), judged by a linear
# probe of the frozen pooled penultimate features (feats[-1]) on STL-10 (trained on the 5,000 labelled
# train images, scored on the 8,000 test images), images resized to 32 x 32.
# The checkpoint is given on the command line:
#   python tools/linear_probe.py configs/cifar100/transfer/wrn_16_2_stl10.py CHECKPOINT [--data-root DIR]
#       --work-dir work_dirs/pipelines/crd_table4/ROW/seedS/probe_stl10   # where tools/pipeline_table.py reads it
# Give --work-dir: the default (<run dir>/linear_probe/feats-1/) is the same for the STL-10 and the TinyImageNet
# probe of one checkpoint, so the second summary would replace the first. configs/pipelines/crd_table4/*.py run
# the same probe as a pipeline stage.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/stl10.py',
          '../../_base_/cifar100/transfer_probe.py']
model = dict(type='wrn_16_2', num_classes=100)
