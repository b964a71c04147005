# CRD Table 4, probe-only: the CIFAR-100 WRN-40-2 teacher
# (configs/cifar100/teachers/wrn_40_2.py), judged by a linear
# probe of the frozen pooled penultimate features (feats[-1]) on TinyImageNet (trained on the 100,000
# train images, scored on the 10,000 val images; 200 classes), images resized to 32 x 32.
# The checkpoint is given on the command line:
#   python tools/linear_probe.py configs/cifar100/transfer/wrn_40_2_tinyimagenet.py CHECKPOINT [--data-root DIR]
#       --work-dir work_dirs/pipelines/crd_table4/ROW/seedS/probe_tinyimagenet   # where tools/pipeline_table.py reads it
# Give --work-dir: the default (<run dir>/linear_probe/feats-1/) is the same for the STL-10 and the TinyImageNet
# probe of one checkpoint, so the second summary would replace the first. configs/pipelines/crd_table4/*.py run
# the same probe as a pipeline stage.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/tinyimagenet.py',
          '../../_base_/cifar100/transfer_probe.py']
model = dict(type='wrn_40_2', num_classes=100)
