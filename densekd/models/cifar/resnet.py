"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2)
in the variant of the CRD / RepDistiller benchmark (Tian et al., ICLR 2020): resnet8 ... resnet110
(widths 16-16-32-64) and the 4x-wide resnet8x4 / resnet32x4 (widths 32-64-128-256).

Parameter names equal RepDistiller's ``models/resnet.py`` so its checkpoints load with
``load_state_dict``. Feature taps reproduce ``model(x, is_feat=True[, preact=True])``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densekd.models.cifar._common import init_kaiming_fan_out
from densekd.registry import MODELS

__all__ = ["BasicBlock", "CifarResNet", "resnet8", "resnet14", "resnet20", "resnet32", "resnet44",
           "resnet56", "resnet110", "resnet8x4", "resnet32x4"]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation residual block: ``act(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.

    Args:
        in_planes: input channels ``C_in``.
        planes: output channels ``C``.
        stride: stride of ``conv1`` (and of the projection shortcut).
        downsample: projection shortcut (1x1 conv + BN) or ``None`` for identity.
        skip: ``False`` removes the shortcut altogether (``act(bn2(conv2(relu(bn1(conv1(x))))))``, a plain
            block; ``downsample`` must then be ``None``): the residual view of KD (below).

    Shapes: ``(B, C_in, H, W) -> (B, C, H/stride, W/stride)``. The final ReLU is the module
    ``act``, so ``'<block>.act:input'`` is the pre-activation (RepDistiller's ``preact``).
    """

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 skip: bool = True):
        super().__init__()
        if not skip and downsample is not None:
            raise ValueError("BasicBlock(skip=False) has no shortcut, so it takes no downsample projection")
        self.skip = bool(skip)
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if not self.skip:
            return self.act(out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.act(out + identity)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with three stages of ``n`` basic blocks (strides 1, 2, 2).

    Paper: He et al., CVPR 2016 (CIFAR architecture); widths and naming of the CRD benchmark
    (Tian et al., "Contrastive Representation Distillation", ICLR 2020, code: RepDistiller).

    Args:
        depth: 6n+2 (8, 14, 20, 32, 44, 56, 110 ...).
        widths: ``(stem, stage1, stage2, stage3)`` channels, e.g. ``(16, 16, 32, 64)``; the x4
            variants use ``(32, 64, 128, 256)``.
        num_classes: logits (default 100, CIFAR-100).
        in_channels: input channels (default 3; 1 or 2 for luminance / chrominance students).
        skip: ``False`` builds the same network without any shortcut (identity or projection): a plain
            6n+2-layer CNN with the residual network's layers and names, minus the projections' parameters.
            This is the student of the residual view of KD (KD read as recovering, in a plain student, what
            a residual teacher's skip connections give it; the CVPR 2020 analysis the issue tracker calls
            "Demystification of KD"): train it alone and with KD from a residual teacher at several depths
            (configs/cifar100/residual_view/). Deep plain CIFAR nets train poorly from scratch (He et al.'s
            Fig. 6: plain-56 is worse than plain-20), which is the gap KD is asked to close.

    Input ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``. Global average pooling is adaptive
    (RepDistiller's ``AvgPool2d(8)`` on the 8x8 map of a 32x32 input: identical there).

    ``feature_taps``: ``feats`` = stem after ReLU ``(B, w0, 32, 32)``, stage outputs
    ``(B, w1, 32, 32)``, ``(B, w2, 16, 16)``, ``(B, w3, 8, 8)``, pooled embedding ``(B, w3)``;
    ``preacts`` = the same with each stage's last block taken before its final ReLU (the stem
    stays post-ReLU, as in RepDistiller).
    """

    def __init__(self, depth: int, widths: Sequence[int] = (16, 16, 32, 64), num_classes: int = 100,
                 in_channels: int = 3, skip: bool = True):
        super().__init__()
        self.skip = bool(skip)
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CifarResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110...), "
                             f"got {depth}")
        if len(widths) != 4:
            raise ValueError(f"CifarResNet widths must be 4 channel counts (stem, stage1, stage2, stage3), "
                             f"got {tuple(widths)}")
        n = (depth - 2) // 6
        self.depth = depth
        self.widths = tuple(int(w) for w in widths)
        self._in_planes = self.widths[0]
        self.conv1 = nn.Conv2d(in_channels, self.widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.widths[0])
        self.relu = nn.ReLU()
        self.layer1 = self._make_stage(self.widths[1], n, stride=1)
        self.layer2 = self._make_stage(self.widths[2], n, stride=2)
        self.layer3 = self._make_stage(self.widths[3], n, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.widths[3] * BasicBlock.expansion, num_classes)
        init_kaiming_fan_out(self)
        self.feature_taps = {
            "feats": ["relu", "layer1", "layer2", "layer3", "fc:input"],
            "preacts": ["relu", "layer1.-1.act:input", "layer2.-1.act:input", "layer3.-1.act:input", "fc:input"],
        }
        # the BN right before the ReLU of each preacts[1:-1] tap (RepDistiller get_bn_before_relu; OFD margins)
        self.bn_before_relu = ["layer1.-1.bn2", "layer2.-1.bn2", "layer3.-1.bn2"]

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if self.skip and (stride != 1 or self._in_planes != planes * BasicBlock.expansion):
            downsample = nn.Sequential(
                nn.Conv2d(self._in_planes, planes * BasicBlock.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self._in_planes, planes, stride, downsample, skip=self.skip)]
        self._in_planes = planes * BasicBlock.expansion
        layers += [BasicBlock(self._in_planes, planes, skip=self.skip) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


_THIN = (16, 16, 32, 64)
_WIDE = (32, 64, 128, 256)


@MODELS.register("resnet8")
def resnet8(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-8, widths 16-16-32-64 (RepDistiller ``resnet8``)."""
    return CifarResNet(8, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet14")
def resnet14(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-14, widths 16-16-32-64 (RepDistiller ``resnet14``)."""
    return CifarResNet(14, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet20")
def resnet20(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-20, widths 16-16-32-64 (RepDistiller ``resnet20``)."""
    return CifarResNet(20, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet32")
def resnet32(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-32, widths 16-16-32-64 (RepDistiller ``resnet32``)."""
    return CifarResNet(32, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet44")
def resnet44(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-44, widths 16-16-32-64 (RepDistiller ``resnet44``)."""
    return CifarResNet(44, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet56")
def resnet56(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-56, widths 16-16-32-64 (RepDistiller ``resnet56``)."""
    return CifarResNet(56, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet110")
def resnet110(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-110, widths 16-16-32-64 (RepDistiller ``resnet110``)."""
    return CifarResNet(110, _THIN, num_classes, in_channels, skip)


@MODELS.register("resnet8x4")
def resnet8x4(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-8 with 4x widths 32-64-128-256 (RepDistiller ``resnet8x4``)."""
    return CifarResNet(8, _WIDE, num_classes, in_channels, skip)


@MODELS.register("resnet32x4")
def resnet32x4(num_classes: int = 100, in_channels: int = 3, skip: bool = True) -> CifarResNet:
    """ResNet-32 with 4x widths 32-64-128-256 (RepDistiller ``resnet32x4``)."""
    return CifarResNet(32, _WIDE, num_classes, in_channels, skip)
