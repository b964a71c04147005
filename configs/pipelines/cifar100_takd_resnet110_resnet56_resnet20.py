# Teacher-assistant KD (TAKD; Mirzadeh et al., "Improved Knowledge Distillation via Teacher Assistant",
# AAAI 2020) on CIFAR-100: resnet110 teacher -> resnet56 assistant -> resnet20 student, KD at every link,
# each stage's best checkpoint teaching the next (one assistant).
#   python tools/pipeline.py configs/pipelines/cifar100_takd_resnet110_resnet56_resnet20.py --data-root data/cifar100
from densekd.pipelines.chains import kd_chain

stages = kd_chain(['resnet110', 'resnet56', 'resnet20'], names=['teacher', 'assistant', 'student'],
                  teacher_config='configs/cifar100/chain/teacher.py', stage_config='configs/cifar100/chain/kd.py')
