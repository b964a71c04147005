"""ImageNet-style ResNet-50 adapted to 32x32 inputs (3x3 stride-1 stem, no max-pool), the
``ResNet50`` teacher of the CRD / RepDistiller benchmark (``models/resnetv2.py``).

Paper: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (bottleneck
blocks, stages of 3-4-6-3 blocks, widths 64-128-256-512 x4). Parameter names equal
RepDistiller's, so its checkpoints load with ``load_state_dict``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densekd.models.cifar._common import init_kaiming_fan_out
from densekd.registry import MODELS

__all__ = ["Bottleneck", "BottleneckResNet", "ResNet50"]


class Bottleneck(nn.Module):
    """Bottleneck residual block 1x1 -> 3x3 (stride) -> 1x1 (x4 channels), post-activation.

    Args:
        in_planes: input channels ``C_in``.
        planes: bottleneck width ``C``; output has ``4 * C`` channels.
        stride: stride of the 3x3 conv (and of the projection shortcut).

    Shapes: ``(B, C_in, H, W) -> (B, 4C, H/stride, W/stride)``. The shortcut is a 1x1 conv + BN
    when the shape changes, else the identity (an empty ``nn.Sequential``). The final ReLU is the
    module ``act``, so ``'<block>.act:input'`` is the pre-activation.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = self.expansion * planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act(out + self.shortcut(x))


class BottleneckResNet(nn.Module):
    """Four-stage bottleneck ResNet for 32x32 inputs (RepDistiller ``resnetv2.ResNet``).

    Args:
        num_blocks: blocks per stage, ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: logits (default 100).
        zero_init_residual: start each residual branch at zero (``bn3.weight = 0``); default
            False as in RepDistiller.

    Stem: 3x3 conv (64, stride 1) + BN + ReLU. Stages: widths 64, 128, 256, 512 (outputs x4),
    strides 1, 2, 2, 2. Input ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``.

    ``feature_taps``: ``feats`` = stem ``(B, 64, 32, 32)``, stage outputs ``(B, 256, 32, 32)``,
    ``(B, 512, 16, 16)``, ``(B, 1024, 8, 8)``, ``(B, 2048, 4, 4)``, pooled ``(B, 2048)``;
    ``preacts`` = the same with each stage's last block before its final ReLU.
    """

    def __init__(self, num_blocks: Sequence[int] = (3, 4, 6, 3), num_classes: int = 100,
                 zero_init_residual: bool = False, in_channels: int = 3):
        super().__init__()
        if len(num_blocks) != 4 or any(int(n) < 1 for n in num_blocks):
            raise ValueError(f"BottleneckResNet num_blocks must be 4 positive counts, e.g. (3, 4, 6, 3); "
                             f"got {tuple(num_blocks)}")
        self._in_planes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.layer1 = self._make_stage(64, num_blocks[0], 1)
        self.layer2 = self._make_stage(128, num_blocks[1], 2)
        self.layer3 = self._make_stage(256, num_blocks[2], 2)
        self.layer4 = self._make_stage(512, num_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * Bottleneck.expansion, num_classes)
        init_kaiming_fan_out(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
        stages = ["layer1", "layer2", "layer3", "layer4"]
        self.feature_taps = {
            "feats": ["relu", *stages, "linear:input"],
            "preacts": ["relu", *[f"{s}.-1.act:input" for s in stages], "linear:input"],
        }
        # the BN right before the ReLU of each preacts[1:-1] tap (RepDistiller get_bn_before_relu; OFD margins)
        self.bn_before_relu = [f"{s}.-1.bn3" for s in stages]

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(int(blocks)):
            layers.append(Bottleneck(self._in_planes, planes, stride if i == 0 else 1))
            self._in_planes = planes * Bottleneck.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.linear(x)


@MODELS.register("ResNet50")
def ResNet50(num_classes: int = 100, in_channels: int = 3) -> BottleneckResNet:  # noqa: N802 (benchmark name)
    """ResNet-50 for 32x32 inputs: bottleneck stages 3-4-6-3 (RepDistiller ``ResNet50``)."""
    return BottleneckResNet((3, 4, 6, 3), num_classes, in_channels=in_channels)
