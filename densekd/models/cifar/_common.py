"""Small pieces shared by the CIFAR model zoo: weight initialisers and channel shuffle.

Nothing here is registered; the architectures live in the sibling modules.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def init_kaiming_fan_out(model: nn.Module) -> None:
    """He-normal (fan-out, ReLU gain) convolutions, BN weight 1 / bias 0; linears keep PyTorch's default.

    The scheme of RepDistiller's ``resnet.py`` / ``resnetv2.py`` (and torchvision's ResNet).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_normal_fan_out(model: nn.Module, linear_std: float | None = 0.01) -> None:
    """Convolutions ~ N(0, 2 / (k*k*C_out)) with zero bias, BN weight 1 / bias 0.

    Linears: weight ~ N(0, ``linear_std``) and zero bias; ``linear_std=None`` keeps the
    default weight and only zeroes the bias (the WRN variant). The scheme of RepDistiller's
    ``wrn.py`` / ``vgg.py`` / ``mobilenetv2.py``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear_std is not None:
                nn.init.normal_(m.weight, 0.0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle of a ``(B, C, H, W)`` tensor: view as ``(B, g, C/g, H, W)``,
    swap the two channel axes, flatten back. ``groups=1`` is the identity."""
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels cannot be split into {groups} groups; "
                         f"use a channel count divisible by the group count")
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ChannelShuffle(nn.Module):
    """Channel shuffle (Zhang et al., "ShuffleNet", CVPR 2018) as a parameter-free module.

    Args:
        groups: number of channel groups ``g``; input ``(B, C, H, W)`` with ``C % g == 0``,
            output has the same shape.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
