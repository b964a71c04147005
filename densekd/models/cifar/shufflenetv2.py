"""ShuffleNet V2 for CIFAR (Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", ECCV 2018) in the variant of the CRD / RepDistiller benchmark (``ShuffleV2``:
net size 1x, stage outputs 116-232-464, 3-7-3 basic units after each down-sampling unit, 1x1 stem
of 24 channels, no max-pool, 1x1 conv to 1024 before pooling).

Parameter names equal RepDistiller's ``models/ShuffleNetv2.py``.
"""
from __future__ import annotations

import torch
from torch import nn

from densekd.models.cifar._common import ChannelShuffle
from densekd.registry import MODELS

__all__ = ["PartialReLU", "ShuffleV2Unit", "ShuffleV2DownUnit", "ShuffleNetV2", "SHUFFLEV2_CFGS", "ShuffleV2"]

#: net size -> (out_channels of stages 1-3 and of the last 1x1 conv, basic units per stage)
SHUFFLEV2_CFGS: dict[float, tuple[tuple[int, int, int, int], tuple[int, int, int]]] = {
    0.2: ((40, 80, 160, 512), (3, 3, 3)),
    0.3: ((40, 80, 160, 512), (3, 7, 3)),
    0.5: ((48, 96, 192, 1024), (3, 7, 3)),
    1.0: ((116, 232, 464, 1024), (3, 7, 3)),
    1.5: ((176, 352, 704, 1024), (3, 7, 3)),
    2.0: ((224, 488, 976, 2048), (3, 7, 3)),
}


class PartialReLU(nn.Module):
    """ReLU on channels ``[keep:]`` only; the first ``keep`` channels pass unchanged.

    Input/output ``(B, C, H, W)``. Used as the final activation of a ShuffleNet V2 unit so that its
    input is the unit's pre-activation ``cat([x1, branch])`` while the output stays
    ``cat([x1, relu(branch)])`` exactly.
    """

    def __init__(self, keep: int):
        super().__init__()
        self.keep = keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : self.keep], torch.relu(x[:, self.keep:])], 1)

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


class ShuffleV2Unit(nn.Module):
    """Basic ShuffleNet V2 unit: split channels in halves ``x1, x2``; branch on ``x2``:
    1x1 conv-BN-ReLU -> 3x3 depthwise-BN -> 1x1 conv-BN; then ``cat([x1, relu(branch)])`` and a
    2-group channel shuffle.

    Args:
        in_channels: ``C`` (input and output channels).
        split_ratio: fraction of channels in ``x1`` (default 0.5).

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``. ``'<unit>.act:input'`` is RepDistiller's ``preact``:
    ``cat([x1, branch])`` before the ReLU and before the shuffle.
    """

    def __init__(self, in_channels: int, split_ratio: float = 0.5):
        super().__init__()
        self.split_channels = int(in_channels * split_ratio)
        c = in_channels - self.split_channels
        if c != self.split_channels:
            raise ValueError(f"ShuffleV2Unit needs equal halves to concatenate back to {in_channels} channels; "
                             f"split_ratio={split_ratio} gives {self.split_channels} + {c}")
        self.conv1 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, kernel_size=3, stride=1, padding=1, groups=c, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.act = PartialReLU(self.split_channels)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.split_channels], x[:, self.split_channels:]
        out = self.relu1(self.bn1(self.conv1(x2)))
        out = self.bn3(self.conv3(self.bn2(self.conv2(out))))
        return self.shuffle(self.act(torch.cat([x1, out], 1)))


class ShuffleV2DownUnit(nn.Module):
    """Down-sampling ShuffleNet V2 unit (stride 2), both branches see the whole input:
    left 3x3 depthwise(s2)-BN -> 1x1 conv-BN-ReLU; right 1x1 conv-BN-ReLU -> 3x3 depthwise(s2)-BN
    -> 1x1 conv-BN-ReLU; concatenation and 2-group shuffle.

    Args: ``in_channels`` ``C_in``, ``out_channels`` ``C`` (even). ``(B, C_in, H, W) -> (B, C, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"ShuffleV2DownUnit out_channels must be even (two halves), got {out_channels}")
        mid = out_channels // 2
        # left branch
        self.conv1 = nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=2, padding=1, groups=in_channels,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv2 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU()
        # right branch
        self.conv3 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(mid, mid, kernel_size=3, stride=2, padding=1, groups=mid, bias=False)
        self.bn4 = nn.BatchNorm2d(mid)
        self.conv5 = nn.Conv2d(mid, mid, kernel_size=1, bias=False)
        self.bn5 = nn.BatchNorm2d(mid)
        self.relu5 = nn.ReLU()
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.relu2(self.bn2(self.conv2(self.bn1(self.conv1(x)))))
        right = self.relu3(self.bn3(self.conv3(x)))
        right = self.relu5(self.bn5(self.conv5(self.bn4(self.conv4(right)))))
        return self.shuffle(torch.cat([left, right], 1))


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2 for 32x32 inputs.

    Args:
        net_size: key of ``SHUFFLEV2_CFGS`` (0.2, 0.3, 0.5, 1.0, 1.5, 2.0); default 1.0 (the benchmark's).
        num_classes: logits (default 100).

    Layout: stem 1x1 conv 3 -> 24, BN, ReLU (``relu``); three stages ``layer1..3`` of one
    down-sampling unit + n basic units; ``conv2`` 1x1 -> 1024, BN, ReLU (``relu2``); global average
    pool (RepDistiller's ``avg_pool2d(4)`` on the 4x4 map of a 32x32 input: identical there);
    ``linear``. Input ``(B, 3, 32, 32)`` -> logits ``(B, num_classes)``.

    ``feature_taps`` (size 1.0): ``feats`` = stem ``(B, 24, 32, 32)``, stage outputs
    ``(B, 116, 16, 16)``, ``(B, 232, 8, 8)``, ``(B, 464, 4, 4)``, pooled ``(B, 1024)`` (after
    conv2); ``preacts`` = stem, each stage's last unit before its ReLU (unshuffled
    ``cat([x1, branch])``, as RepDistiller returns it), pooled.
    """

    def __init__(self, net_size: float = 1.0, num_classes: int = 100, in_channels: int = 3):
        super().__init__()
        if float(net_size) not in SHUFFLEV2_CFGS:
            raise ValueError(f"ShuffleNetV2 net_size must be one of {sorted(SHUFFLEV2_CFGS)}, got {net_size}")
        out_channels, num_blocks = SHUFFLEV2_CFGS[float(net_size)]
        self.conv1 = nn.Conv2d(in_channels, 24, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(24)
        self.relu = nn.ReLU()
        self._in_channels = 24
        self.layer1 = self._make_stage(out_channels[0], num_blocks[0])
        self.layer2 = self._make_stage(out_channels[1], num_blocks[1])
        self.layer3 = self._make_stage(out_channels[2], num_blocks[2])
        self.conv2 = nn.Conv2d(out_channels[2], out_channels[3], kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels[3])
        self.relu2 = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(out_channels[3], num_classes)
        stages = ["layer1", "layer2", "layer3"]
        self.feature_taps = {
            "feats": ["relu", *stages, "linear:input"],
            "preacts": ["relu", *[f"{s}.-1.act:input" for s in stages], "linear:input"],
        }
        # RepDistiller's get_bn_before_relu raises for ShuffleNets (no OFD teacher support)
        self.bn_before_relu = None

    def _make_stage(self, out_channels: int, blocks: int) -> nn.Sequential:
        layers = [ShuffleV2DownUnit(self._in_channels, out_channels)]
        layers += [ShuffleV2Unit(out_channels) for _ in range(blocks)]
        self._in_channels = out_channels
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.linear(x)


@MODELS.register("ShuffleV2")
def ShuffleV2(num_classes: int = 100, in_channels: int = 3) -> ShuffleNetV2:  # noqa: N802 (benchmark name)
    """ShuffleNet V2 1.0x: widths 116-232-464, 1024 head, units 3-7-3 (RepDistiller ``ShuffleV2``)."""
    return ShuffleNetV2(1.0, num_classes, in_channels)
