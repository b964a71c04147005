# The TAKD baseline: resnet110 -> resnet8 by KD with no assistant (the same links as the chains beside it).
from densekd.pipelines.chains import kd_chain

stages = kd_chain(['resnet110', 'resnet8'], teacher_config='configs/cifar100/chain/teacher.py',
                  stage_config='configs/cifar100/chain/kd.py')
