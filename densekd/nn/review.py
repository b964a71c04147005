"""ReviewKD's learnable fusion of multi-level student features (Chen et al., CVPR 2021, "Distilling Knowledge via
Knowledge Review"): attention-based fusion (ABF) modules chained from the deepest level to the shallowest.

Built from shapes only (channels and spatial sizes of the tapped maps), so they live inside the loss module and
train with the student like any connector. Imports nothing above ``torch``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ABF", "ReviewFusion"]


def _size(size) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    h, w = (int(v) for v in size)
    return (h, w)


class ABF(nn.Module):
    """One attention-based fusion block of ReviewKD.

    ``x`` (``B x C_in x H x W``, a student feature) is reduced to ``mid_channels`` by a 1x1 conv + BN. When the
    block fuses (every level but the deepest), the residual ``r`` from the deeper level (``B x mid x h x w``) is
    resized to ``H x W`` (nearest) and two spatial attention maps ``a = sigmoid(conv1x1([x, r]))``
    (``B x 2 x H x W``, a 1x1 conv with bias from ``2 mid`` channels) weight the sum ``x * a_0 + r * a_1``. The
    result is resized (nearest) to ``out_size`` when that differs (the teacher's map size), then a 3x3 conv +
    BN maps it to ``out_channels``. ``forward`` returns ``(output, fused)``: ``output`` is compared with the
    teacher, ``fused`` (``B x mid x out_size``) is the residual handed to the next, shallower, level.

    Both conv weights are initialised with ``kaiming_uniform_(a=1)``, the attention conv and the BNs with
    PyTorch's defaults, as the authors' ``ABF``.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, fuse: bool):
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid_channels, kernel_size=1, bias=False),
                                    nn.BatchNorm2d(mid_channels))
        self.project = nn.Sequential(nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
                                     nn.BatchNorm2d(out_channels))
        self.attention = nn.Sequential(nn.Conv2d(2 * mid_channels, 2, kernel_size=1), nn.Sigmoid()) if fuse else None
        for conv in (self.reduce[0], self.project[0]):
            nn.init.kaiming_uniform_(conv.weight, a=1)

    @property
    def fuses(self) -> bool:
        return self.attention is not None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None,
                out_size: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.attention is not None:
            if residual is None:
                raise ValueError("ABF: this block fuses the deeper level's residual; pass residual=")
            residual = F.interpolate(residual, size=tuple(x.shape[-2:]), mode="nearest")
            a = self.attention(torch.cat([x, residual], dim=1))
            x = x * a[:, 0:1] + residual * a[:, 1:2]
        if out_size is not None and tuple(x.shape[-2:]) != _size(out_size):
            x = F.interpolate(x, size=_size(out_size), mode="nearest")
        return self.project(x), x


class ReviewFusion(nn.Module):
    """The chain of :class:`ABF` blocks over ``L`` levels, ordered shallow -> deep as the taps.

    Level ``L-1`` (the deepest) has a non-fusing block; level ``i < L-1`` fuses the residual of level ``i+1``.
    ``forward(feats)`` takes the ``L`` student maps (``B x s_channels[i] x H_i x W_i``) and returns the ``L``
    outputs (``B x t_channels[i] x t_sizes[i]``), shallow -> deep, computed from the deepest level up: the
    knowledge-review path. ``blocks[i]`` serves level ``i``.
    """

    def __init__(self, s_channels: Sequence[int], t_channels: Sequence[int], t_sizes: Sequence, mid_channels: int):
        super().__init__()
        if not (len(s_channels) == len(t_channels) == len(t_sizes)) or not s_channels:
            raise ValueError(f"ReviewFusion needs one student width, teacher width and teacher size per level; got "
                             f"{len(s_channels)}, {len(t_channels)}, {len(t_sizes)}")
        if int(mid_channels) < 1:
            raise ValueError(f"ReviewFusion: mid_channels must be >= 1, got {mid_channels}")
        n = len(s_channels)
        self.mid_channels = int(mid_channels)
        self.t_sizes = [_size(s) for s in t_sizes]
        self.blocks = nn.ModuleList(ABF(int(c_in), self.mid_channels, int(c_out), fuse=i < n - 1)
                                    for i, (c_in, c_out) in enumerate(zip(s_channels, t_channels)))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.blocks):
            raise ValueError(f"ReviewFusion was built for {len(self.blocks)} levels but got {len(feats)} features")
        outputs: list[torch.Tensor | None] = [None] * len(self.blocks)
        residual = None
        for i in reversed(range(len(self.blocks))):
            outputs[i], residual = self.blocks[i](feats[i], residual, self.t_sizes[i])
        return outputs  # type: ignore[return-value]
