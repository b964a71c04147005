"""Monocular depth estimation: supervised losses (L1, SILog, berHu) on valid pixels, NYU evaluation metrics,
colour-mapped depth pictures with a shared range."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densekd.metrics.depth import DEPTH_METRICS, image_depth_metrics
from densekd.registry import TASKS
from densekd.tasks.base import Evaluator, Task, main_output

try:
    import cv2
except ImportError:  # pragma: no cover - albumentations ships OpenCV
    cv2 = None

LOSSES = ("silog", "l1", "berhu")


def as_depth_map(x: torch.Tensor, what: str) -> torch.Tensor:
    """``B x 1 x H x W`` from ``B x 1 x H x W`` or ``B x H x W``; anything else is an error naming ``what``."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{what} must be a depth map B x 1 x H x W (or B x H x W); got {tuple(x.shape)}")
    return x


def resize_depth(pred: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of a ``B x 1 x h x w`` depth map to ``size`` (no-op when equal)."""
    if tuple(pred.shape[-2:]) == tuple(size):
        return pred
    return F.interpolate(pred, size=tuple(size), mode="bilinear", align_corners=False)


def silog_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, variance_focus: float = 0.85,
               scale: float = 10.0, eps: float = 1e-6) -> torch.Tensor:
    """Scale-invariant log loss (Eigen et al., NIPS 2014; BTS / AdaBins form):
    ``scale * sqrt(mean(d^2) - variance_focus * mean(d)^2)``, ``d = log(pred) - log(gt)`` over ``mask``
    (all masked pixels of the batch together, as BTS)."""
    d = pred[mask].clamp_min(eps).log() - gt[mask].clamp_min(eps).log()
    return scale * ((d ** 2).mean() - variance_focus * d.mean() ** 2).clamp_min(0).add(eps).sqrt()


def berhu_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, c_ratio: float = 0.2) -> torch.Tensor:
    """Reverse Huber (Laina et al., 3DV 2016): ``|r|`` for ``|r| <= c``, ``(r^2 + c^2) / (2c)`` above, with
    ``c = c_ratio * max|r|`` over the batch's masked pixels, detached (a constant of the step, as in the
    authors' code); the mean over masked pixels."""
    r = (pred[mask] - gt[mask]).abs()
    c = (c_ratio * r.max()).detach().clamp_min(1e-6)
    return torch.where(r <= c, r, (r ** 2 + c ** 2) / (2 * c)).mean()


def l1_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (pred[mask] - gt[mask]).abs().mean()


def colorize_depth(depth, vmin: float, vmax: float) -> np.ndarray:
    """``H x W`` depth (metres) -> ``H x W x 3`` uint8 with the magma colour map over ``[vmin, vmax]``
    (near = dark, far = bright); pixels without depth (``<= 0`` or non-finite) are black."""
    d = np.asarray(depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else depth, dtype=np.float64)
    d = np.squeeze(d)
    if d.ndim != 2:
        raise ValueError(f"a depth picture needs an H x W map; got shape {d.shape}")
    missing = ~np.isfinite(d) | (d <= 0)
    span = max(vmax - vmin, 1e-6)
    v = np.rint(np.clip((np.nan_to_num(d) - vmin) / span, 0, 1) * 255).astype(np.uint8)
    if cv2 is not None:
        rgb = cv2.applyColorMap(v, cv2.COLORMAP_MAGMA)[..., ::-1]
    else:  # pragma: no cover
        rgb = np.repeat(v[..., None], 3, axis=2)
    rgb = np.ascontiguousarray(rgb)
    rgb[missing] = 0
    return rgb


class DepthEvaluator(Evaluator):
    """Sums of per-image metrics (``state['sum']``, float64) and the image counts, so ranks can add them."""

    def __init__(self, target_key: str = "depth", min_depth: float = 1e-3, max_depth: float = 10.0,
                 crop: str | None = "eigen"):
        super().__init__()
        self.target_key, self.min_depth, self.max_depth, self.crop = target_key, min_depth, max_depth, crop

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        gt = as_depth_map(batch[self.target_key], f"batch[{self.target_key!r}]").to(pred.device)
        pred = resize_depth(as_depth_map(pred, "the depth prediction").float(), gt.shape[-2:])
        rows = image_depth_metrics(pred, gt, self.min_depth, self.max_depth, self.crop)
        ok = ~torch.isnan(rows[:, 0])
        self.accumulate("sum", rows[ok].sum(0) if bool(ok.any()) else torch.zeros(len(DEPTH_METRICS), dtype=torch.float64))
        self.accumulate("images", torch.tensor(int(ok.sum())))
        self.accumulate("empty", torch.tensor(int((~ok).sum())))

    def compute(self) -> dict[str, float]:
        n = int(self.state.get("images", torch.tensor(0)))
        if n == 0:
            return {k: float("nan") for k in DEPTH_METRICS}
        out = {k: float(v) / n for k, v in zip(DEPTH_METRICS, self.state["sum"])}
        empty = int(self.state.get("empty", torch.tensor(0)))
        if empty:
            out["images_without_valid_depth"] = float(empty)
        return out


@TASKS.register("depth")
class DepthTask(Task):
    """Monocular depth estimation (NYU-Depth v2 protocol).

    Loss (``loss(output, batch)`` -> ``{'depth': ...}``): the model's depth ``B x 1 x h x w`` (metres, positive:
    see :func:`densekd.models.depth.depth_model`) is resized bilinearly to the target ``batch[target_key]``
    (``B x 1 x H x W``, 0 = missing) and compared on valid pixels (``min_depth < gt <= max_depth``) with
    ``loss='silog'`` (default; ``variance_focus=0.85``, ``silog_scale=10``, BTS / AdaBins), ``'l1'`` or
    ``'berhu'`` (``c = 0.2 max|r|`` over the batch). A batch without valid pixels gives a zero loss.

    Inference: the depth map at the input size; ``flip=True`` averages it with the prediction on the mirrored
    image (BTS's test-time flip). Metrics (:mod:`densekd.metrics.depth`): ``abs_rel`` (primary, lower is
    better), ``sq_rel``, ``rmse``, ``rmse_log``, ``log10``, ``delta1..3``, ``silog``, per image then averaged,
    valid in ``(min_depth, max_depth]``, ``eval_crop='eigen'`` (or None).

    Pictures: ground truth and each prediction colour-mapped (magma) over ONE range per sample -- the valid
    ground truth's 2nd..98th percentile, or ``vis_range=(lo, hi)`` -- with missing depth black.
    """

    metrics = DEPTH_METRICS
    primary_metric = "abs_rel"
    higher_is_better = False

    def __init__(self, loss: str = "silog", variance_focus: float = 0.85, silog_scale: float = 10.0,
                 berhu_c: float = 0.2, min_depth: float = 1e-3, max_depth: float = 10.0,
                 eval_crop: str | None = "eigen", flip: bool = False, target_key: str = "depth",
                 vis_range: tuple[float, float] | None = None):
        if loss not in LOSSES:
            raise ValueError(f"depth loss must be one of {LOSSES}; got {loss!r}")
        if not 0 <= min_depth < max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth; got {min_depth}, {max_depth}")
        if eval_crop not in (None, "eigen"):
            raise ValueError(f"eval_crop must be 'eigen' or None; got {eval_crop!r}")
        self.loss_type, self.variance_focus, self.silog_scale, self.berhu_c = loss, float(variance_focus), \
            float(silog_scale), float(berhu_c)
        self.min_depth, self.max_depth, self.eval_crop = float(min_depth), float(max_depth), eval_crop
        self.flip, self.target_key = bool(flip), target_key
        self.vis_range = tuple(vis_range) if vis_range is not None else None

    # -- training -----------------------------------------------------------------------------------------
    def valid(self, gt: torch.Tensor) -> torch.Tensor:
        return (gt > self.min_depth) & (gt <= self.max_depth)

    def depth_loss(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The configured loss of ``pred`` against ``gt`` (both ``B x 1 x H x W`` after resizing ``pred``)."""
        gt = as_depth_map(gt, "the depth target")
        pred = resize_depth(as_depth_map(pred, "the model's depth output"), gt.shape[-2:])
        mask = self.valid(gt)
        if not bool(mask.any()):
            return pred.sum() * 0.0
        if self.loss_type == "silog":
            return silog_loss(pred, gt, mask, self.variance_focus, self.silog_scale)
        if self.loss_type == "berhu":
            return berhu_loss(pred, gt, mask, self.berhu_c)
        return l1_loss(pred, gt, mask)

    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        if self.target_key not in batch:
            raise KeyError(f"the depth task reads batch[{self.target_key!r}] but the batch has {sorted(batch)}; "
                           f"set task.target_key or use a dataset that yields depth")
        return {"depth": self.depth_loss(main_output(output), batch[self.target_key])}

    # -- inference ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        pred = resize_depth(as_depth_map(main_output(model(image)), "the model's depth output"), image.shape[-2:])
        if self.flip:
            flipped = resize_depth(as_depth_map(main_output(model(image.flip(-1))), "the model's depth output"),
                                   image.shape[-2:])
            pred = 0.5 * (pred + flipped.flip(-1))
        return pred

    def evaluator(self) -> DepthEvaluator:
        return DepthEvaluator(self.target_key, self.min_depth, self.max_depth, self.eval_crop)

    # -- deployment ---------------------------------------------------------------------------------------
    output_names = ("depth",)

    def deploy_output(self, output, image: torch.Tensor) -> torch.Tensor:
        """Depth ``B x 1 x H x W`` in metres at the input resolution: one pass, no flip averaging."""
        return resize_depth(as_depth_map(main_output(output), "the model's depth output"), image.shape[-2:])

    def result_maps(self, prediction) -> list[tuple[str, np.ndarray]]:
        """``[('depth', H x W float32 metres)]``."""
        d = prediction.detach().cpu().numpy() if isinstance(prediction, torch.Tensor) else np.asarray(prediction)
        d = np.squeeze(np.asarray(d, dtype=np.float32))
        if d.ndim != 2:
            raise ValueError(f"a depth prediction is 1 x H x W or H x W; got shape {d.shape}")
        return [("depth", d)]

    # -- presentation -------------------------------------------------------------------------------------
    def picture_range(self, target: torch.Tensor | None) -> tuple[float, float]:
        """The shared colour range of one sample's pictures (see the class docstring)."""
        if self.vis_range is not None:
            return self.vis_range
        if target is not None:
            t = np.asarray(target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else target)
            t = t[(t > self.min_depth) & (t <= self.max_depth)]
            if t.size:
                lo, hi = np.percentile(t, [2, 98])
                if hi > lo:
                    return float(lo), float(hi)
        return self.min_depth, self.max_depth

    def draw_target(self, target) -> np.ndarray:
        return colorize_depth(target, *self.picture_range(target))

    def draw_prediction(self, prediction) -> np.ndarray:
        return colorize_depth(prediction, self.min_depth, self.max_depth)

    def panels(self, sample: dict, predictions: Mapping[str, torch.Tensor]) -> list[tuple[str, np.ndarray]]:
        target = sample[self.target_key]
        lo, hi = self.picture_range(target)
        out = [("ground truth", colorize_depth(target, lo, hi))]
        out += [(str(title), colorize_depth(pred, lo, hi)) for title, pred in predictions.items()]
        return out

    def legend(self, width: int = 256, height: int = 24) -> np.ndarray:
        """The colour bar of :func:`colorize_depth` (left = near, right = far)."""
        ramp = np.tile(np.linspace(1.0, 2.0, width), (height, 1))
        return colorize_depth(ramp, 1.0, 2.0)

    def metric_report(self, metrics: Mapping[str, float]) -> str:
        rows = [k for k in DEPTH_METRICS if k in metrics and not math.isnan(metrics[k])]
        if not rows:
            return ""
        lower = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog")
        head = " | ".join(f"{k} {'↓' if k in lower else '↑'}" for k in rows)
        return f"| {head} |\n|{'---|' * len(rows)}\n| " + " | ".join(f"{metrics[k]:.4f}" for k in rows) + " |\n"
