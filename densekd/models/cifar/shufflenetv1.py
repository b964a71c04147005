"""ShuffleNet V1 for CIFAR (Zhang et al., "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018) in the variant of the CRD / RepDistiller benchmark
(``ShuffleV1``: groups 3, stage outputs 240-480-960, 4-8-4 units, 1x1 stem of 24 channels, no
max-pool, a ReLU after the depthwise conv as in that code base).

Parameter names equal RepDistiller's ``models/ShuffleNetv1.py``.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densekd.models.cifar._common import ChannelShuffle
from densekd.registry import MODELS

__all__ = ["ShuffleV1Unit", "ShuffleNetV1", "ShuffleV1"]


class ShuffleV1Unit(nn.Module):
    """ShuffleNet unit: 1x1 group conv -> BN -> ReLU -> shuffle -> 3x3 depthwise (stride) -> BN
    -> ReLU -> 1x1 group conv -> BN, merged with the shortcut, then ReLU (module ``act``).

    Args:
        in_planes: input channels ``C_in``.
        out_planes: channels of the residual branch ``C`` (bottleneck width ``C // 4``).
        stride: 1 (merge by addition, needs ``C == C_in``) or 2 (shortcut is a 3x3 average
            pool and the merge is a concatenation, giving ``C + C_in`` channels).
        groups: groups of the 1x1 convolutions.
        conv1_groups: groups of the first 1x1 conv (1 for the network's first unit, whose
            input is the narrow stem, as in the paper); default ``groups``.

    The input of ``act`` (``'<unit>.act:input'``) is the pre-activation merge.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, groups: int, conv1_groups: int | None = None):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit stride must be 1 or 2, got {stride}")
        if stride == 1 and in_planes != out_planes:
            raise ValueError(f"ShuffleV1Unit with stride 1 adds its shortcut, so in_planes ({in_planes}) must "
                             f"equal out_planes ({out_planes})")
        g1 = groups if conv1_groups is None else conv1_groups
        mid = out_planes // 4
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, mid, kernel_size=1, groups=g1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU()
        self.shuffle1 = ChannelShuffle(g1)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, stride=stride, padding=1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(mid, out_planes, kernel_size=1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1)) if stride == 2 else nn.Sequential()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle1(self.relu1(self.bn1(self.conv1(x))))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        res = self.shortcut(x)
        merged = torch.cat([out, res], 1) if self.stride == 2 else out + res
        return self.act(merged)


class ShuffleNetV1(nn.Module):
    """ShuffleNet V1 for 32x32 inputs.

    Args:
        out_planes: output channels of the three stages (default 240, 480, 960).
        num_blocks: units per stage (default 4, 8, 4); the first unit of each stage has stride 2.
        groups: group count (default 3).
        num_classes: logits (default 100).

    Stem: 1x1 conv 3 -> 24, BN, ReLU (stride 1). Input ``(B, 3, 32, 32)`` -> logits
    ``(B, num_classes)``; pooling is global average (RepDistiller's ``avg_pool2d(4)`` on the 4x4
    map of a 32x32 input: identical there).

    ``feature_taps``: ``feats`` = stem ``(B, 24, 32, 32)``, stage outputs ``(B, 240, 16, 16)``,
    ``(B, 480, 8, 8)``, ``(B, 960, 4, 4)``, pooled ``(B, 960)``; ``preacts`` = the same with each
    stage's last unit taken before its final ReLU.
    """

    def __init__(self, out_planes: Sequence[int] = (240, 480, 960), num_blocks: Sequence[int] = (4, 8, 4),
                 groups: int = 3, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if len(out_planes) != 3 or len(num_blocks) != 3 or any(int(n) < 1 for n in num_blocks):
            raise ValueError(f"ShuffleNetV1 needs three stage widths and three positive unit counts, got "
                             f"out_planes={tuple(out_planes)}, num_blocks={tuple(num_blocks)}")
        self.conv1 = nn.Conv2d(in_channels, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU()
        self._in_planes = 24
        self.layer1 = self._make_stage(int(out_planes[0]), int(num_blocks[0]), groups, first=True)
        self.layer2 = self._make_stage(int(out_planes[1]), int(num_blocks[1]), groups)
        self.layer3 = self._make_stage(int(out_planes[2]), int(num_blocks[2]), groups)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(int(out_planes[2]), num_classes)
        stages = ["layer1", "layer2", "layer3"]
        self.feature_taps = {
            "feats": ["relu", *stages, "linear:input"],
            "preacts": ["relu", *[f"{s}.-1.act:input" for s in stages], "linear:input"],
        }
        # RepDistiller's get_bn_before_relu raises for ShuffleNets (no OFD teacher support)
        self.bn_before_relu = None

    def _make_stage(self, out_planes: int, blocks: int, groups: int, first: bool = False) -> nn.Sequential:
        # The strided first unit concatenates its input, so its branch makes out - in channels.
        layers = [ShuffleV1Unit(self._in_planes, out_planes - self._in_planes, 2, groups,
                                conv1_groups=1 if first else groups)]
        layers += [ShuffleV1Unit(out_planes, out_planes, 1, groups) for _ in range(1, blocks)]
        self._in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.linear(x)


@MODELS.register("ShuffleV1")
def ShuffleV1(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV1:  # noqa: N802 (benchmark name)
    """ShuffleNet V1, g = 3, widths 240-480-960, units 4-8-4 (RepDistiller ``ShuffleV1``)."""
    return ShuffleNetV1((240, 480, 960), (4, 8, 4), 3, num_classes, in_channels)
