"""Distillation of depth maps: pixel-wise regression against the teacher's depth.

* :class:`DepthKD` -- the student's depth regresses the teacher's, pixel by pixel (the depth counterpart of
  structured KD's pixel-wise term; Liu et al., "Structured Knowledge Distillation for Dense Prediction",
  TPAMI 2020, Sec. 4.3, depth on NYU-Depth v2), with an L1 or a scale-invariant log distance.

The pair-wise and holistic terms (:mod:`densekd.losses.dense`, :mod:`densekd.losses.adversarial`) and the
feature losses (FitNet, AT, CWD) apply to depth networks' features and depth maps unchanged.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densekd.losses._utils import single_tensor
from densekd.registry import LOSSES

__all__ = ["DepthKD"]


def _depth_map(x: Any, role: str) -> torch.Tensor:
    x = single_tensor(x, "DepthKD", role, "depth map", hint="tap the depth output once (student='output')")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"DepthKD: expected the {role}'s depth map B x 1 x H x W; got {tuple(x.shape)}. Tap the "
                         f"depth output (student='output'), not features (use FitNet / AT / CWD for those)")
    return x


@LOSSES.register()
class DepthKD(nn.Module):
    """Pixel-wise depth distillation: the student's depth map regresses the (detached) teacher's.

    Shapes: ``student`` / ``teacher``: depth maps ``B x 1 x H x W`` in metres (the models' outputs; the
    teacher's is resized bilinearly to the student's size when they differ). Optional ``extra[target_key]``:
    the ground truth ``B x 1 x H x W`` (0 = missing), resized nearest to the student's size.

    Pixels: ``mask='all'`` (default) uses every pixel where the teacher's depth lies in ``(min_depth,
    max_depth]`` -- the teacher also teaches where the sensor has no depth, which is much of what it adds;
    ``mask='valid'`` only pixels with valid ground truth. ``confidence=tau`` weights each labelled pixel by
    ``w = exp(-|t - g| / (tau * g))`` (trust the teacher where its relative error on the ground truth is
    small; unlabelled pixels keep weight 1); ``None`` (default): all weights 1.

    Distance: ``loss='l1'`` (default): ``sum(w |s - t|) / sum(w)``; ``loss='silog'``: with ``d = log s - log t``,
    ``silog_scale * sqrt(E_w[d^2] - variance_focus * E_w[d]^2)`` (weighted means; 10 and 0.85 as the SILog
    task loss). Returns a scalar; 0 when no pixel qualifies.

    Defaults: ``loss='l1'``, ``mask='all'``, ``confidence=None``, term weight 1. Departure: the structured-KD
    depth code is not released; its pixel-wise depth term is a squared difference of depth maps, here L1 or
    SILog (the distances the depth task trains with), and the confidence weighting is densekd's own.
    """

    def __init__(self, loss: str = "l1", mask: str = "all", confidence: float | None = None,
                 target_key: str = "depth", min_depth: float = 1e-3, max_depth: float = 10.0,
                 variance_focus: float = 0.85, silog_scale: float = 10.0):
        super().__init__()
        if loss not in ("l1", "silog"):
            raise ValueError(f"DepthKD: loss must be 'l1' or 'silog'; got {loss!r}")
        if mask not in ("all", "valid"):
            raise ValueError(f"DepthKD: mask must be 'all' or 'valid'; got {mask!r}")
        if confidence is not None and not confidence > 0:
            raise ValueError(f"DepthKD: confidence (tau) must be > 0 or None; got {confidence!r}")
        self.loss, self.mask, self.confidence = loss, mask, confidence
        self.target_key, self.min_depth, self.max_depth = target_key, float(min_depth), float(max_depth)
        self.variance_focus, self.silog_scale = float(variance_focus), float(silog_scale)

    def extra_repr(self) -> str:
        return f"loss={self.loss!r}, mask={self.mask!r}, confidence={self.confidence}"

    def _ground_truth(self, extra: dict, like: torch.Tensor) -> torch.Tensor | None:
        gt = extra.get(self.target_key)
        if gt is None:
            return None
        if gt.dim() == 3:
            gt = gt.unsqueeze(1)
        if gt.dim() != 4 or gt.shape[0] != like.shape[0]:
            raise ValueError(f"DepthKD: batch[{self.target_key!r}] must be B x 1 x H x W depth; got {tuple(gt.shape)}")
        if gt.shape[-2:] != like.shape[-2:]:
            gt = F.interpolate(gt.float(), size=like.shape[-2:], mode="nearest")
        return gt.to(like.dtype)

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        s, t = _depth_map(student, "student"), _depth_map(teacher, "teacher").detach()
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"DepthKD: student batch {tuple(s.shape)} and teacher batch {tuple(t.shape)} differ")
        if t.shape[-2:] != s.shape[-2:]:
            t = F.interpolate(t, size=s.shape[-2:], mode="bilinear", align_corners=False)
        keep = (t > self.min_depth) & (t <= self.max_depth)
        gt = self._ground_truth(extra, s)
        labelled = None if gt is None else (gt > self.min_depth) & (gt <= self.max_depth)
        if self.mask == "valid":
            if labelled is None:
                raise KeyError(f"DepthKD(mask='valid') needs the ground truth batch[{self.target_key!r}]")
            keep = keep & labelled
        w = torch.ones_like(s)
        if self.confidence is not None:
            if labelled is None:
                raise KeyError(f"DepthKD(confidence=...) needs the ground truth batch[{self.target_key!r}]")
            rel = (t - gt).abs() / gt.clamp_min(self.min_depth)
            w = torch.where(labelled, torch.exp(-rel / self.confidence), w)
        w = w * keep
        total = w.sum()
        if not bool(total > 0):
            return s.sum() * 0.0
        if self.loss == "l1":
            return (w * (s - t).abs()).sum() / total
        d = s.clamp_min(self.min_depth).log() - t.clamp_min(self.min_depth).log()
        mean_d, mean_d2 = (w * d).sum() / total, (w * d ** 2).sum() / total
        return self.silog_scale * (mean_d2 - self.variance_focus * mean_d ** 2).clamp_min(0).add(1e-6).sqrt()
