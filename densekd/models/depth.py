"""Monocular depth networks: smp encoder-decoders with a one-channel depth head (positive, bounded).

``depth_model(arch='FPN', encoder='resnet18', max_depth=10.0)`` is a :class:`~densekd.models.seg.SegModel`
with one output channel whose raw output ``z`` becomes depth in metres:

* ``activation='sigmoid'`` (default): ``max_depth * sigmoid(z)`` -- bounded by ``max_depth`` (BTS, AdaBins);
* ``activation='softplus'``: ``min_depth + softplus(z)`` -- positive, unbounded;
* ``activation='exp'``: ``exp(z)`` clamped to ``[min_depth, max_depth]`` (log-depth regression).

The module names are SegModel's (``encoder``, ``decoder``, ``segmentation_head``), so the feature taps of
segmentation configs (``encoder.layer3``, ``decoder``, ``feats[...]``) apply to depth networks unchanged and a
segmentation encoder (``pretrained=PATH``) loads into a depth network.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from densekd.models.seg import SegModel
from densekd.registry import MODELS

ACTIVATIONS = ("sigmoid", "softplus", "exp")


class DepthModel(SegModel):
    """See the module docstring. ``forward(x)`` -> depth ``B x 1 x H x W`` in metres at the input size."""

    def __init__(self, arch: str = "FPN", encoder: str = "resnet18", max_depth: float = 10.0,
                 min_depth: float = 1e-3, activation: str = "sigmoid", pretrained: str | None = None,
                 **arch_kwargs: Any):
        if activation not in ACTIVATIONS:
            raise ValueError(f"depth activation must be one of {ACTIVATIONS}; got {activation!r}")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth; got {min_depth}, {max_depth}")
        if "num_classes" in arch_kwargs or "aux_head" in arch_kwargs:
            raise ValueError("a depth model has one output channel and no auxiliary head; drop num_classes/aux_head")
        super().__init__(arch=arch, encoder=encoder, num_classes=1, aux_head=False, pretrained=pretrained,
                         **arch_kwargs)
        self.max_depth, self.min_depth, self.activation = float(max_depth), float(min_depth), activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(super().forward(x))

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """The head's raw output -> depth in metres (``activation``)."""
        if self.activation == "sigmoid":
            return self.max_depth * torch.sigmoid(z)
        if self.activation == "softplus":
            return self.min_depth + F.softplus(z)
        return z.exp().clamp(self.min_depth, self.max_depth)

    def extra_repr(self) -> str:
        return (f"arch={self.arch}, encoder={self.encoder_name}, depth in ({self.min_depth}, {self.max_depth}] "
                f"via {self.activation}")


@MODELS.register()
def depth_model(arch: str = "FPN", encoder: str = "resnet18", max_depth: float = 10.0, min_depth: float = 1e-3,
                activation: str = "sigmoid", pretrained: str | None = None, **arch_kwargs: Any) -> DepthModel:
    """Build a :class:`DepthModel`; ``arch_kwargs`` go to the smp architecture as for ``seg_model``."""
    return DepthModel(arch=arch, encoder=encoder, max_depth=max_depth, min_depth=min_depth, activation=activation,
                      pretrained=pretrained, **arch_kwargs)
