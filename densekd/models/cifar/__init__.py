"""CIFAR model zoo of the CRD / RepDistiller benchmark (Tian et al., "Contrastive Representation
Distillation", ICLR 2020; code: github.com/HobbitLong/RepDistiller).

Every model takes ``num_classes=100`` and ``in_channels=3`` (e.g. 1 for an STL-10 ``L`` view, 2 for ``ab``:
only the first convolution changes), maps ``(B, in_channels, 32, 32)`` images to ``(B, num_classes)``
logits, has RepDistiller's architecture, parameter count and parameter names (its checkpoints
load with ``load_state_dict``), and defines ``feature_taps = {'feats': [...], 'preacts': [...]}``:
tap paths (see :mod:`densekd.distill.taps`) that record exactly RepDistiller's
``model(x, is_feat=True)`` and ``model(x, is_feat=True, preact=True)`` feature lists.
No activation is in-place, so recorded tensors are never overwritten.

``model.bn_before_relu`` lists the paths of the BatchNorm layers RepDistiller's
``get_bn_before_relu()`` returns (one per ``preacts[1:-1]`` tap; used for OFD's margins), or is
``None`` for the ShuffleNets, which RepDistiller does not support there.

Registered names (``MODELS.build(dict(type=NAME, num_classes=...))``): see ``CIFAR_MODELS``.
"""
from densekd.models.cifar.mobilenetv2 import InvertedResidual, MobileNetV2, mobile_half
from densekd.models.cifar.resnet import (BasicBlock, CifarResNet, resnet8, resnet8x4, resnet14, resnet20,
                                         resnet32, resnet32x4, resnet44, resnet56, resnet110)
from densekd.models.cifar.resnetv2 import Bottleneck, BottleneckResNet, ResNet50
from densekd.models.cifar.shufflenetv1 import ShuffleNetV1, ShuffleV1, ShuffleV1Unit
from densekd.models.cifar.shufflenetv2 import (PartialReLU, ShuffleNetV2, ShuffleV2, ShuffleV2DownUnit,
                                               ShuffleV2Unit)
from densekd.models.cifar.vgg import VGG, VGG_CFGS, vgg8, vgg11, vgg13, vgg16, vgg19
from densekd.models.cifar.wrn import WideBasicBlock, WideResNet, WideStage, wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2

#: the registered names of the benchmark zoo (``mobile_half`` is an alias of ``MobileNetV2``)
CIFAR_MODELS = (
    "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4", "resnet32x4",
    "ResNet50", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "MobileNetV2", "ShuffleV1", "ShuffleV2",
)

__all__ = [
    "CIFAR_MODELS",
    "BasicBlock", "CifarResNet", "resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet8x4", "resnet32x4",
    "Bottleneck", "BottleneckResNet", "ResNet50",
    "WideBasicBlock", "WideStage", "WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2",
    "VGG", "VGG_CFGS", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19",
    "InvertedResidual", "MobileNetV2", "mobile_half",
    "ShuffleV1Unit", "ShuffleNetV1", "ShuffleV1",
    "PartialReLU", "ShuffleV2Unit", "ShuffleV2DownUnit", "ShuffleNetV2", "ShuffleV2",
]
