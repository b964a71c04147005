"""VGG with batch norm for CIFAR (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015) in the CRD / RepDistiller variant: five conv blocks,
no fully-connected hidden layers, global average pooling and one linear classifier 512 -> classes.

Registered as ``vgg8``, ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` (RepDistiller's ``vgg*_bn``, which
its model table lists under the same names without ``_bn``). Parameter names equal RepDistiller's.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densekd.models.cifar._common import init_normal_fan_out
from densekd.registry import MODELS

__all__ = ["VGG", "VGG_CFGS", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19"]

#: conv widths of the five blocks (a 2x2 max-pool follows blocks 0, 1, 2; see VGG.forward).
VGG_CFGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "S": ((64,), (128,), (256,), (512,), (512,)),                                           # vgg8
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),                               # vgg11
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),                        # vgg13
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),         # vgg16
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),                        # vgg19
}


def _make_block(widths: Sequence[int], in_channels: int) -> nn.Sequential:
    """conv3x3(bias) -> BN -> ReLU repeated, with the block's last ReLU left out (it is the
    model-level ``act<i>``, so the block output is the pre-activation)."""
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(in_channels, w, kernel_size=3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
        in_channels = w
    return nn.Sequential(*layers[:-1])


class VGG(nn.Module):
    """VGG-BN for 32x32 (and 64x64) inputs.

    Args:
        cfg: five tuples of conv widths (see ``VGG_CFGS``), the last block must end in 512 channels.
        num_classes: logits (default 100).

    Forward: ``act_i(block_i(x))`` for i = 0..4, with 2x2 max-pools ``pool0``, ``pool1``, ``pool2``
    after blocks 0-2 (and ``pool3`` after block 3 only for 64x64 inputs, as in RepDistiller),
    then global average pooling and ``classifier`` (Linear 512 -> classes). Input
    ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``.

    ``feature_taps``: ``feats`` = ``act0..act4`` outputs (post-ReLU; 32x32 input:
    ``(B, c0, 32, 32)``, ``(B, c1, 16, 16)``, ``(B, c2, 8, 8)``, ``(B, 512, 4, 4)``,
    ``(B, 512, 4, 4)``) and the pooled embedding ``(B, 512)``; ``preacts`` = ``act0`` output
    (post-ReLU, as in RepDistiller), the raw ``block1..block4`` outputs (BN, before ReLU) and the
    pooled embedding.
    """

    def __init__(self, cfg: Sequence[Sequence[int]], num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        cfg = [tuple(int(c) for c in block) for block in cfg]
        if len(cfg) != 5 or any(not block for block in cfg) or cfg[-1][-1] != 512:
            raise ValueError(f"VGG cfg must be five non-empty tuples of widths ending with 512 "
                             f"(see densekd.models.cifar.vgg.VGG_CFGS), got {cfg}")
        in_ch = int(in_channels)
        for i, widths in enumerate(cfg):
            setattr(self, f"block{i}", _make_block(widths, in_ch))
            in_ch = widths[-1]
        for i in range(4):
            setattr(self, f"pool{i}", nn.MaxPool2d(kernel_size=2, stride=2))
        self.pool4 = nn.AdaptiveAvgPool2d(1)
        for i in range(5):
            setattr(self, f"act{i}", nn.ReLU())
        self.classifier = nn.Linear(512, num_classes)
        init_normal_fan_out(self, linear_std=0.01)
        self.feature_taps = {
            "feats": ["act0", "act1", "act2", "act3", "act4", "classifier:input"],
            "preacts": ["act0", "block1", "block2", "block3", "block4", "classifier:input"],
        }
        # the BN right before the ReLU of each preacts[1:-1] tap (RepDistiller get_bn_before_relu; OFD margins)
        self.bn_before_relu = ["block1.-1", "block2.-1", "block3.-1", "block4.-1"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        x = self.pool0(self.act0(self.block0(x)))
        x = self.pool1(self.act1(self.block1(x)))
        x = self.pool2(self.act2(self.block2(x)))
        x = self.act3(self.block3(x))
        if h == 64:
            x = self.pool3(x)
        x = self.act4(self.block4(x))
        x = torch.flatten(self.pool4(x), 1)
        return self.classifier(x)


@MODELS.register("vgg8")
def vgg8(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-8 with BN, config "S" (RepDistiller ``vgg8_bn``)."""
    return VGG(VGG_CFGS["S"], num_classes, in_channels)


@MODELS.register("vgg11")
def vgg11(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-11 with BN, config "A" (RepDistiller ``vgg11_bn``)."""
    return VGG(VGG_CFGS["A"], num_classes, in_channels)


@MODELS.register("vgg13")
def vgg13(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-13 with BN, config "B" (RepDistiller ``vgg13_bn``)."""
    return VGG(VGG_CFGS["B"], num_classes, in_channels)


@MODELS.register("vgg16")
def vgg16(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-16 with BN, config "D" (RepDistiller ``vgg16_bn``)."""
    return VGG(VGG_CFGS["D"], num_classes, in_channels)


@MODELS.register("vgg19")
def vgg19(num_classes: int = 100, in_channels: int = 3) -> VGG:
    """VGG-19 with BN, config "E" (RepDistiller ``vgg19_bn``)."""
    return VGG(VGG_CFGS["E"], num_classes, in_channels)
