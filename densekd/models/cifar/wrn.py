"""Wide Residual Networks for CIFAR (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016)
as used by the CRD / RepDistiller benchmark: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2 (dropout 0).

Pre-activation blocks (BN -> ReLU -> conv). Parameter names equal RepDistiller's ``models/wrn.py``
so its checkpoints load with ``load_state_dict``.
"""
from __future__ import annotations

import torch
from torch import nn

from densekd.models.cifar._common import init_normal_fan_out
from densekd.registry import MODELS

__all__ = ["WideBasicBlock", "WideStage", "WideResNet", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"]


class WideBasicBlock(nn.Module):
    """Pre-activation wide block: ``shortcut + conv2(drop(relu2(bn2(conv1(relu1(bn1(x)))))))``.

    Args:
        in_planes: input channels ``C_in``.
        out_planes: output channels ``C``.
        stride: stride of ``conv1`` and of the shortcut.
        drop_rate: dropout between the convolutions (default 0, the benchmark setting).

    Shapes: ``(B, C_in, H, W) -> (B, C, H/stride, W/stride)``. When ``C_in == C`` the shortcut is
    the raw input ``x``; otherwise a 1x1 conv ``convShortcut`` applied to ``relu1(bn1(x))``
    (the WRN reference code's convention).
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int = 1, drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(  # noqa: N815 (checkpoint key)
            in_planes, out_planes, kernel_size=1, stride=stride, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(a)))
        out = self.conv2(self.dropout(out))
        shortcut = x if self.convShortcut is None else self.convShortcut(a)
        return shortcut + out


class WideStage(nn.Module):
    """A stage of ``n`` :class:`WideBasicBlock` (first one strided); blocks live in ``self.layer``.

    Args: ``n``, ``in_planes``, ``out_planes``, ``stride``, ``drop_rate`` (see the block).
    ``(B, in_planes, H, W) -> (B, out_planes, H/stride, W/stride)``.
    """

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop_rate: float = 0.0):
        super().__init__()
        self.layer = nn.Sequential(*[
            WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop_rate)
            for i in range(n)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k for 32x32 inputs.

    Args:
        depth: 6n+4 (16, 22, 28, 40 ...); each of the three stages has ``n`` blocks.
        widen_factor: ``k``; stage widths are 16k, 32k, 64k (stem 16), strides 1, 2, 2.
        num_classes: logits (default 100).
        drop_rate: dropout inside blocks (default 0.0 as in the CRD benchmark).

    Input ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``; head is BN + ReLU + global average
    pool + linear (RepDistiller's ``avg_pool2d(8)`` on the 8x8 map; identical there).

    ``feature_taps`` (RepDistiller's lists): ``feats`` = stem conv ``(B, 16, 32, 32)``, stage
    outputs ``(B, 16k, 32, 32)``, ``(B, 32k, 16, 16)``, ``(B, 64k, 8, 8)`` and the pooled
    embedding ``(B, 64k)``. Being a pre-activation network, the stage outputs are sums, not
    ReLU outputs, so they are signed. ``preacts`` = stem conv, then each stage output passed
    through the BN that follows it (``block2.layer.0.bn1``, ``block3.layer.0.bn1``, ``bn1``;
    what RepDistiller recomputes for ``preact=True``), then the pooled embedding.
    """

    def __init__(self, depth: int, widen_factor: int = 1, num_classes: int = 100, drop_rate: float = 0.0,
                 in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40...), got {depth}")
        if widen_factor < 1:
            raise ValueError(f"WideResNet widen_factor must be a positive integer, got {widen_factor}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.depth, self.widen_factor = depth, widen_factor
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.block1 = WideStage(n, widths[0], widths[1], 1, drop_rate)
        self.block2 = WideStage(n, widths[1], widths[2], 2, drop_rate)
        self.block3 = WideStage(n, widths[2], widths[3], 2, drop_rate)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)
        self.nChannels = widths[3]  # noqa: N815 (RepDistiller attribute name)
        init_normal_fan_out(self, linear_std=None)
        self.feature_taps = {
            "feats": ["conv1", "block1", "block2", "block3", "fc:input"],
            "preacts": ["conv1", "block2.layer.0.bn1", "block3.layer.0.bn1", "bn1", "fc:input"],
        }
        # the BN right before the ReLU of each preacts[1:-1] tap (RepDistiller get_bn_before_relu; OFD margins)
        self.bn_before_relu = ["block2.layer.0.bn1", "block3.layer.0.bn1", "bn1"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.block3(self.block2(self.block1(x)))
        x = self.relu(self.bn1(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


@MODELS.register("wrn_16_1")
def wrn_16_1(num_classes: int = 100, in_channels: int = 3) -> WideResNet:
    """WRN-16-1 (RepDistiller ``wrn_16_1``)."""
    return WideResNet(16, 1, num_classes, in_channels=in_channels)


@MODELS.register("wrn_16_2")
def wrn_16_2(num_classes: int = 100, in_channels: int = 3) -> WideResNet:
    """WRN-16-2 (RepDistiller ``wrn_16_2``)."""
    return WideResNet(16, 2, num_classes, in_channels=in_channels)


@MODELS.register("wrn_40_1")
def wrn_40_1(num_classes: int = 100, in_channels: int = 3) -> WideResNet:
    """WRN-40-1 (RepDistiller ``wrn_40_1``)."""
    return WideResNet(40, 1, num_classes, in_channels=in_channels)


@MODELS.register("wrn_40_2")
def wrn_40_2(num_classes: int = 100, in_channels: int = 3) -> WideResNet:
    """WRN-40-2 (RepDistiller ``wrn_40_2``)."""
    return WideResNet(40, 2, num_classes, in_channels=in_channels)
