"""A multi-task dense network: one shared smp encoder, a segmentation branch and a depth branch.

``multitask_model(arch='FPN', encoder='resnet18', num_classes=40, max_depth=10.0)`` returns
``{'seg': logits B x num_classes x H x W, 'depth': depth B x 1 x H x W}`` (metres, as
:class:`~densekd.models.depth.DepthModel`) in training and evaluation alike. Each branch is the decoder and
head of the same smp architecture: ``seg_decoder`` / ``seg_head`` and ``depth_decoder`` / ``depth_head``; the
encoder's taps are SegModel's (``encoder.layer3``...). Distillation terms read a branch's prediction with the
taps ``output.seg`` / ``output.depth`` and its features with ``seg_decoder`` / ``depth_decoder``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from densekd.models.depth import DepthModel
from densekd.models.seg import SegModel, crop_to_input, pad_to_multiple
from densekd.registry import MODELS


class MultiTaskModel(nn.Module):
    """See the module docstring."""

    def __init__(self, arch: str = "FPN", encoder: str = "resnet18", num_classes: int = 40, max_depth: float = 10.0,
                 min_depth: float = 1e-3, activation: str = "sigmoid", pretrained: str | None = None,
                 **arch_kwargs: Any):
        super().__init__()
        seg = SegModel(arch=arch, encoder=encoder, num_classes=num_classes, pretrained=pretrained, **arch_kwargs)
        depth = DepthModel(arch=arch, encoder=encoder, max_depth=max_depth, min_depth=min_depth,
                           activation=activation, **arch_kwargs)
        self.arch, self.encoder_name, self.num_classes = arch, encoder, num_classes
        self.encoder = seg.encoder  # shared; the depth branch's own encoder is discarded
        self.seg_decoder, self.seg_head = seg.decoder, seg.segmentation_head
        self.depth_decoder, self.depth_head = depth.decoder, depth.segmentation_head
        self._to_depth = depth.activate
        self.size_divisor = seg.size_divisor
        stages = seg.feature_taps["feats"][:-1]
        self.feature_taps = {"feats": stages + ["seg_decoder", "depth_decoder"]}
        if "preacts" in seg.feature_taps:
            self.feature_taps["preacts"] = list(seg.feature_taps["preacts"])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x, h, w = pad_to_multiple(x, self.size_divisor, "MultiTaskModel")
        feats = self.encoder(x)
        seg = crop_to_input(self.seg_head(self.seg_decoder(feats)), x, h, w)
        z = crop_to_input(self.depth_head(self.depth_decoder(feats)), x, h, w)
        return {"seg": seg, "depth": self._to_depth(z)}

    def extra_repr(self) -> str:
        return f"arch={self.arch}, encoder={self.encoder_name}, num_classes={self.num_classes}, + depth"


@MODELS.register()
def multitask_model(arch: str = "FPN", encoder: str = "resnet18", num_classes: int = 40, max_depth: float = 10.0,
                    min_depth: float = 1e-3, activation: str = "sigmoid", pretrained: str | None = None,
                    **arch_kwargs: Any) -> MultiTaskModel:
    """Build a :class:`MultiTaskModel`; ``pretrained`` is an encoder state dict (loaded into the shared encoder)."""
    return MultiTaskModel(arch=arch, encoder=encoder, num_classes=num_classes, max_depth=max_depth,
                          min_depth=min_depth, activation=activation, pretrained=pretrained, **arch_kwargs)
