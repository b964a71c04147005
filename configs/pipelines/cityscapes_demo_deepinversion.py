# Data-free distillation for segmentation (DeepInversion's BatchNorm-statistics synthesis, our extension to dense
# teachers) at the demo's scale: train the demo teacher on the synthetic street scenes, invert 200 unlabelled
# 64 x 128 images from its BatchNorm statistics and image priors, distil the demo student on them with pixel-wise KD
# only, evaluate on the labelled synthetic validation scenes; the demo student trained on the real scenes
# (configs/cityscapes/demo/student_baseline.py) is the reference.
#   python tools/pipeline.py configs/pipelines/cityscapes_demo_deepinversion.py
#   python tools/pipeline.py configs/pipelines/cityscapes_demo_deepinversion.py --max-iters 2   # a smoke run
stages = [
    dict(name='teacher', config='configs/cityscapes/demo/teacher.py'),
    dict(name='synth', kind='synthesize', config='configs/synthesis/cityscapes/deepinversion_demo_teacher.py',
         cfg_options={'synthesis.teacher.checkpoint': '{teacher.best}'}),
    dict(name='student', config='configs/cityscapes/data_free/demo_student_pixelwise.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}', 'data.train.path': '{synth.data}'}),
    dict(name='baseline', config='configs/cityscapes/demo/student_baseline.py'),
]
