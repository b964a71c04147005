# TAKD's longest CIFAR-100 ResNet path (Mirzadeh et al., AAAI 2020): resnet110 -> resnet56 -> resnet32 ->
# resnet20 -> resnet14 -> resnet8, four teacher assistants, KD at every link (the paper found that more
# assistants along the path help; its full-path result for resnet8 is its best). Compare the last stage with
# resnet110 -> resnet8 directly:  configs/pipelines/cifar100_takd_resnet110_resnet8_direct.py.
#   python tools/pipeline.py configs/pipelines/cifar100_takd_resnet110_to_resnet8.py --data-root data/cifar100
from densekd.pipelines.chains import kd_chain

stages = kd_chain(['resnet110', 'resnet56', 'resnet32', 'resnet20', 'resnet14', 'resnet8'],
                  teacher_config='configs/cifar100/chain/teacher.py', stage_config='configs/cifar100/chain/kd.py')
