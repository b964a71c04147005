# Tf-KD's three experiments (Yuan, Tay, Li, Wang and Feng, "Revisiting Knowledge Distillation via Label
# Smoothing Regularization", CVPR 2020) on the CIFAR-100 zoo, in one pipeline and so in one table
# (pipeline.md): a trained resnet8x4 teaching a fresh resnet8x4 (self-training), the small resnet8x4 teaching
# the large resnet32x4 (reverse KD), and a deliberately poorly trained resnet32x4 (one epoch of the recipe)
# teaching resnet8x4 -- beside resnet8x4 alone, label smoothing and the virtual teacher (Tf-KD_reg).
# Every distillation link uses the benchmark's KD recipe (T 4, CE 0.1 + KD 0.9), not Tf-KD_self's per-model
# temperatures; compare with the 'resnet32x4 -> resnet8x4' KD row of CRD's table for a well-trained teacher.
#   python tools/pipeline.py configs/pipelines/cifar100_tfkd_experiments.py --data-root data/cifar100 --seed 0
_kd = 'configs/cifar100/chain/kd.py'
stages = [
    dict(name='resnet8x4', config='configs/cifar100/students/resnet8x4.py'),
    dict(name='self_training', config=_kd, cfg_options={
        'model.type': 'resnet8x4', 'teacher.model.type': 'resnet8x4', 'teacher.checkpoint': '{resnet8x4.best}'}),
    dict(name='reverse_kd', config=_kd, cfg_options={
        'model.type': 'resnet32x4', 'teacher.model.type': 'resnet8x4', 'teacher.checkpoint': '{resnet8x4.best}'}),
    dict(name='poor_teacher', config='configs/cifar100/chain/teacher.py', cfg_options={
        'model.type': 'resnet32x4', 'train.epochs': 1}),
    dict(name='poor_teacher_kd', config=_kd, cfg_options={
        'model.type': 'resnet8x4', 'teacher.model.type': 'resnet32x4', 'teacher.checkpoint': '{poor_teacher.best}'}),
    dict(name='label_smoothing', config='configs/cifar100/teacher_free/resnet8x4_lsr.py'),
    dict(name='tfkd_virtual_teacher', config='configs/cifar100/teacher_free/resnet8x4_tfkd.py'),
]
