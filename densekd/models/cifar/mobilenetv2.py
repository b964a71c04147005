"""MobileNetV2 for CIFAR (Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018) in the variant of the CRD / RepDistiller benchmark (``mobile_half``:
expansion 6, width multiplier 0.5, network stride 16 for 32x32 inputs), registered as
``MobileNetV2`` (the name in the CRD tables) and ``mobile_half`` (RepDistiller's name).

Differences from torchvision's MobileNetV2, kept for fidelity: every inverted residual has the
1x1 expansion conv (also for expansion 1), the strides are 2 (stem), 1, 1, 2, 2, 1, 2, 1, the
last conv has 1280 channels for width multipliers <= 1, and there is no dropout. Parameter names
equal RepDistiller's ``models/mobilenetv2.py``.
"""
from __future__ import annotations

import torch
from torch import nn

from densekd.models.cifar._common import init_normal_fan_out
from densekd.registry import MODELS

__all__ = ["InvertedResidual", "MobileNetV2", "mobile_half"]

# (expansion, channels, repeats, first stride); expansion None = the model's expand_ratio.
_SETTING = ((1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
            (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1))


def _conv_bn_relu(inp: int, oup: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(oup), nn.ReLU())


class InvertedResidual(nn.Module):
    """Inverted residual with linear bottleneck: 1x1 expand -> BN -> ReLU -> 3x3 depthwise
    (stride) -> BN -> ReLU -> 1x1 project -> BN, plus the input when shapes allow.

    Args:
        inp: input channels ``C_in``; oup: output channels ``C``; stride: 1 or 2;
        expand_ratio: hidden width ``C_in * expand_ratio``.

    Shapes: ``(B, C_in, H, W) -> (B, C, H/stride, W/stride)``; the output has no ReLU (linear
    bottleneck), so it is signed.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs (RepDistiller ``mobilenetv2_T_w``).

    Args:
        num_classes: logits (default 100).
        expand_ratio: ``T``, expansion of stages 2-7 (default 6).
        width_mult: channel multiplier (default 0.5 = the benchmark's ``mobile_half``).

    Layout: ``conv1`` (3x3 s2 conv-BN-ReLU, 32*w channels), ``blocks[0..6]`` (stages of the table
    t-c-n-s: 1-16-1-1, T-24-2-1, T-32-3-2, T-64-4-2, T-96-3-1, T-160-3-2, T-320-1-1, channels x w),
    ``conv2`` (1x1 conv-BN-ReLU to 1280), global average pool, ``classifier`` (Linear).
    Input ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``.

    ``feature_taps``: ``feats`` = ``conv1`` ``(B, 16, 16, 16)``, ``blocks.1`` ``(B, 12, 16, 16)``,
    ``blocks.2`` ``(B, 16, 8, 8)``, ``blocks.4`` ``(B, 48, 4, 4)``, ``blocks.6`` ``(B, 160, 2, 2)``,
    pooled ``(B, 1280)`` (shapes for w = 0.5). RepDistiller ignores ``preact`` for this model,
    so ``preacts`` equals ``feats`` (block outputs are linear bottlenecks, already pre-ReLU).
    """

    def __init__(self, num_classes: int = 100, expand_ratio: int = 6, width_mult: float = 0.5,
                 in_channels: int = 3):
        super().__init__()
        if width_mult <= 0 or expand_ratio < 1:
            raise ValueError(f"MobileNetV2 needs width_mult > 0 and expand_ratio >= 1, "
                             f"got width_mult={width_mult}, expand_ratio={expand_ratio}")
        in_ch = int(32 * width_mult)
        self.conv1 = _conv_bn_relu(in_channels, in_ch, 3, 2)
        self.blocks = nn.ModuleList()
        for t, c, n, s in _SETTING:
            out_ch = int(c * width_mult)
            layers = []
            for i in range(n):
                layers.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, expand_ratio if t is None else t))
                in_ch = out_ch
            self.blocks.append(nn.Sequential(*layers))
        self.last_channel = int(1280 * width_mult) if width_mult > 1.0 else 1280
        self.conv2 = _conv_bn_relu(in_ch, self.last_channel, 1, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(self.last_channel, num_classes))
        init_normal_fan_out(self, linear_std=0.01)
        feats = ["conv1", "blocks.1", "blocks.2", "blocks.4", "blocks.6", "classifier:input"]
        self.feature_taps = {"feats": feats, "preacts": list(feats)}
        # last BN of stages 1, 2, 4, 6 (RepDistiller's get_bn_before_relu, used by OFD)
        self.bn_before_relu = [f"blocks.{i}.-1.conv.-1" for i in (1, 2, 4, 6)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for stage in self.blocks:
            x = stage(x)
        x = torch.flatten(self.avgpool(self.conv2(x)), 1)
        return self.classifier(x)


@MODELS.register("MobileNetV2")
@MODELS.register("mobile_half")
def mobile_half(num_classes: int = 100, in_channels: int = 3) -> MobileNetV2:
    """MobileNetV2 with expansion 6 and width 0.5 (RepDistiller ``mobile_half``, the CRD
    tables' "MobileNetV2")."""
    return MobileNetV2(num_classes, expand_ratio=6, width_mult=0.5, in_channels=in_channels)
