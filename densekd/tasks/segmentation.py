"""Semantic segmentation: pixel-wise cross-entropy (+ auxiliary head), whole / sliding-window / multi-scale
inference, confusion-matrix metrics (mIoU, pixel accuracy, mean class accuracy, in percent), palette pictures
of label maps and a per-class IoU report."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densekd.metrics.segmentation import confusion_matrix, segmentation_metrics
from densekd.registry import TASKS
from densekd.tasks.base import Evaluator, Task, main_output


def _pair(v, name: str) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    if len(v) != 2 or min(v) < 1:
        raise ValueError(f"{name} must be an int or a (height, width) pair of positive ints; got {v!r}")
    return v


def voc_palette(n: int) -> list[tuple[int, int, int]]:
    """The first ``n`` colours of the PASCAL VOC colour map (the devkit's ``labelcolormap``): colour ``i`` spreads
    the bits of ``i`` over the channels, bit ``3k`` to red, ``3k + 1`` to green, ``3k + 2`` to blue, each at
    value ``2 ** (7 - k)``: 0 -> black, 1 -> (128, 0, 0), 2 -> (0, 128, 0), 3 -> (128, 128, 0), 8 -> (64, 0, 0)...
    Distinct for ``n <= 256``."""
    if n < 0:
        raise ValueError(f"voc_palette needs n >= 0; got {n}")
    out = []
    for i in range(n):
        rgb = [0, 0, 0]
        for k in range(8):
            for ch in range(3):
                rgb[ch] |= ((i >> (3 * k + ch)) & 1) << (7 - k)
        out.append(tuple(rgb))
    return out


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The palette of a dataset that brings none: VOC colours 1..num_classes (:func:`voc_palette` without its
    black entry 0, so that black stays for ignore pixels)."""
    return voc_palette(num_classes + 1)[1:]


def _check_palette(palette, num_classes: int) -> list[tuple[int, int, int]]:
    colours = [tuple(c) for c in palette]
    if len(colours) != num_classes:
        raise ValueError(f"{len(colours)} palette colours given for num_classes={num_classes}")
    for c in colours:
        if len(c) != 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in c):
            raise ValueError(f"palette colours must be (r, g, b) integers in 0..255; got {c!r}")
    return [tuple(int(v) for v in c) for c in colours]


def _class_ids(prediction, num_classes: int) -> np.ndarray:
    """Scores ``C x H x W`` (arg-maxed) or class ids ``H x W`` -> ``H x W`` int64 numpy class ids."""
    if isinstance(prediction, torch.Tensor):
        prediction = prediction.detach().cpu()
        prediction = (prediction.argmax(0) if prediction.dim() == 3 else prediction).numpy()
    prediction = np.asarray(prediction)
    if prediction.ndim == 3:
        if prediction.shape[0] != num_classes:
            raise ValueError(f"prediction has {prediction.shape[0]} channels but the task has num_classes={num_classes}")
        prediction = prediction.argmax(0)
    if prediction.ndim != 2:
        raise ValueError(f"a segmentation prediction is C x H x W scores or H x W ids; got shape {prediction.shape}")
    return prediction.astype(np.int64)


class SegmentationEvaluator(Evaluator):
    """Accumulates a num_classes x num_classes confusion matrix (rows: ground truth) in ``state['confmat']``.

    ``update(pred, batch)``: ``pred`` scores B x C x h x w (resized bilinearly to the label size if needed,
    then arg-maxed) or class ids B x H x W; ``batch['target']`` B x H x W with ``ignore_index`` pixels, which
    are never counted. ``compute()``: ``mIoU``, ``pixel_acc``, ``mean_acc`` (percent) and ``IoU/<class>`` for
    every class present in the ground truth or the predictions (absent classes are excluded from the mean
    and from the output, see :mod:`densekd.metrics.segmentation`).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None,
                 target_key: str = "target"):
        super().__init__()
        self.target_key = target_key
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names given for num_classes={num_classes}")

    def update(self, pred: torch.Tensor, batch: dict) -> None:
        target = batch[self.target_key]
        if target.dim() == 2:
            target = target.unsqueeze(0)
        target = target.to(pred.device)
        if pred.dim() == 4:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"prediction has {pred.shape[1]} channels but the task has num_classes="
                                 f"{self.num_classes}")
            if pred.shape[-2:] != target.shape[-2:]:
                pred = F.interpolate(pred.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
            labels = pred.argmax(1)
        elif pred.dim() == 3 and not pred.is_floating_point():
            labels = pred
        else:
            raise ValueError(f"SegmentationEvaluator.update expects scores B x C x H x W or class ids B x H x W; "
                             f"got {pred.dtype} {tuple(pred.shape)}")
        self.accumulate("confmat", confusion_matrix(labels, target, self.num_classes, self.ignore_index))

    def compute(self) -> dict[str, float]:
        if "confmat" not in self.state:
            return {"mIoU": float("nan"), "pixel_acc": float("nan"), "mean_acc": float("nan")}
        cm = self.state["confmat"]
        res = segmentation_metrics(cm, self.class_names)
        out = {"mIoU": res["mIoU"], "pixel_acc": res["pixel_acc"], "mean_acc": res["mean_acc"]}
        for name, v in zip(self.class_names, res["IoU"]):
            if not math.isnan(v):
                out[f"IoU/{name}"] = float(v)
        return out


@TASKS.register("segmentation")
class SegmentationTask(Task):
    """Semantic segmentation task (PSPNet / DeepLab training and evaluation recipe).

    Loss (``loss(output, batch)``): ``{'seg': CE(out, target), 'aux': aux_weight * CE(aux, target)}`` with
    ``ignore_index`` and optional per-class ``class_weights``; ``out`` / ``aux`` are B x C x h x w logits,
    upsampled bilinearly to the B x H x W target if smaller; ``'aux'`` only when the model returns it
    (PSPNet: ``aux_weight=0.4``). A batch whose pixels are all ignored gives a zero loss (not NaN). The
    target is ``batch[target_key]`` (default ``'target'``; NYU's multi-task batches carry it as ``'label'``).

    Inference (``predict(model, image)`` -> B x C x H x W softmax probabilities): ``mode='whole'`` runs the
    full image; ``mode='slide'`` runs ``crop_size`` windows every ``stride`` pixels (default 2/3 of the
    crop, as mmsegmentation's 769/513) and averages the probabilities where windows overlap. ``scales``
    (e.g. ``(0.5, 0.75, 1.0, 1.25, 1.5, 1.75)``) and ``flip`` average the probabilities over resized and
    horizontally flipped copies, each mapped back to the input size.

    Metrics: ``mIoU`` (primary), ``pixel_acc``, ``mean_acc`` in percent, plus ``IoU/<class>``;
    :meth:`metric_report` is the per-class IoU table.

    ``class_names`` / ``palette``: the dataset's (the builder offers its ``class_names`` / ``palette``
    attributes); without them classes are ``class0``, ``class1``... and coloured with
    :func:`default_palette`. Pictures (:meth:`draw_target`, :meth:`draw_prediction`) colour label maps with
    the palette, ignore pixels black; :meth:`legend` is the colour key.
    """

    metrics = ("mIoU", "pixel_acc", "mean_acc")
    primary_metric = "mIoU"
    higher_is_better = True

    def __init__(self, num_classes: int = 19, ignore_index: int = 255, aux_weight: float = 0.4,
                 class_weights: Sequence[float] | None = None, mode: str = "whole",
                 crop_size: int | Sequence[int] | None = None, stride: int | Sequence[int] | None = None,
                 scales: Sequence[float] = (1.0,), flip: bool = False, class_names: Sequence[str] | None = None,
                 palette: Sequence[Sequence[int]] | None = None, target_key: str = "target"):
        if mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide'; got {mode!r}")
        self.num_classes = int(num_classes)
        self.target_key = target_key
        self.ignore_index = int(ignore_index)
        self.aux_weight = float(aux_weight)
        self.mode = mode
        self.crop_size = _pair(crop_size, "crop_size")
        if mode == "slide" and self.crop_size is None:
            raise ValueError("mode='slide' needs crop_size=(h, w) (e.g. the training crop, 512 x 1024 or 769)")
        stride = _pair(stride, "stride")
        if self.crop_size is not None and stride is None:
            stride = tuple(max(1, math.ceil(c * 2 / 3)) for c in self.crop_size)
        self.stride = stride
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of positive factors; got {scales!r}")
        self.flip = bool(flip)
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if class_weights.shape != (self.num_classes,):
                raise ValueError(f"class_weights must have num_classes={self.num_classes} entries; "
                                 f"got shape {tuple(class_weights.shape)}")
        self.class_weights = class_weights
        if class_names is None:
            class_names = [f"class{i}" for i in range(self.num_classes)]
        if isinstance(class_names, str) or len(class_names) != self.num_classes:
            got = repr(class_names) if isinstance(class_names, str) else f"{len(class_names)} names"
            raise ValueError(f"class_names must be a list of num_classes={self.num_classes} names (the dataset's "
                             f"and the task's class counts must agree); got {got}")
        self.class_names = [str(c) for c in class_names]
        self.palette = default_palette(self.num_classes) if palette is None else _check_palette(palette,
                                                                                                self.num_classes)

    # -- training -----------------------------------------------------------------------------------------
    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
            raise ValueError(f"segmentation loss expects logits B x C x h x w and target B x H x W; got "
                             f"{tuple(logits.shape)} and {tuple(target.shape)}")
        if logits.shape[1] != self.num_classes:
            raise ValueError(f"model outputs {logits.shape[1]} channels but the task has num_classes="
                             f"{self.num_classes}; set the model's num_classes to match")
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        weight = None if self.class_weights is None else self.class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, target.long(), weight=weight, ignore_index=self.ignore_index)

    def loss(self, output, batch: dict) -> dict[str, torch.Tensor]:
        if self.target_key not in batch:
            raise KeyError(f"the segmentation task reads batch[{self.target_key!r}] but the batch has "
                           f"{sorted(batch)}; set task.target_key or use a dataset that yields label maps")
        target = batch[self.target_key]
        losses = {"seg": self._ce(main_output(output), target)}
        if isinstance(output, dict) and output.get("aux") is not None:
            # computed even with aux_weight=0 so the aux head stays in the graph (DDP unused-parameter check)
            losses["aux"] = self.aux_weight * self._ce(output["aux"], target)
        return losses

    # -- inference ----------------------------------------------------------------------------------------
    def _logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = main_output(model(x))
        if out.dim() != 4 or out.shape[1] != self.num_classes:
            raise ValueError(f"model output {tuple(out.shape)} is not B x num_classes({self.num_classes}) x H x W")
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def _slide(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ch, cw = min(self.crop_size[0], H), min(self.crop_size[1], W)
        sh, sw = self.stride
        rows = max(H - ch + sh - 1, 0) // sh + 1
        cols = max(W - cw + sw - 1, 0) // sw + 1
        probs = x.new_zeros((B, self.num_classes, H, W))
        count = x.new_zeros((1, 1, H, W))
        for r in range(rows):
            for c in range(cols):
                y1, x1 = min(r * sh, H - ch), min(c * sw, W - cw)
                y2, x2 = y1 + ch, x1 + cw
                probs[:, :, y1:y2, x1:x2] += self._logits(model, x[:, :, y1:y2, x1:x2]).softmax(1)
                count[:, :, y1:y2, x1:x2] += 1
        return probs / count

    def _single(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "slide":
            return self._slide(model, x)
        return self._logits(model, x).softmax(1)

    @torch.no_grad()
    def predict(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities B x num_classes x H x W, averaged over windows, scales and flips."""
        H, W = image.shape[-2:]
        total, n = None, 0
        for s in self.scales:
            x = image
            if s != 1.0:
                size = (max(1, int(round(H * s))), max(1, int(round(W * s))))
                x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
            for flipped in ((False, True) if self.flip else (False,)):
                p = self._single(model, x.flip(-1) if flipped else x)
                if flipped:
                    p = p.flip(-1)
                if p.shape[-2:] != (H, W):
                    p = F.interpolate(p, size=(H, W), mode="bilinear", align_corners=False)
                total = p if total is None else total + p
                n += 1
        return total / n

    def evaluator(self) -> SegmentationEvaluator:
        return SegmentationEvaluator(self.num_classes, self.ignore_index, self.class_names, self.target_key)

    # -- deployment ---------------------------------------------------------------------------------------
    output_names = ("logits",)

    def deploy_output(self, output, image: torch.Tensor) -> torch.Tensor:
        """Logits ``B x num_classes x H x W`` at the input resolution (bilinear, as :meth:`predict` resizes): one
        whole-image pass; softmax, sliding windows, scales and flips are left to the caller."""
        out = main_output(output)
        if out.shape[-2:] != image.shape[-2:]:
            out = F.interpolate(out, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def result_maps(self, prediction) -> list[tuple[str, np.ndarray]]:
        """``[('label', H x W class ids)]``: the arg-max over classes of :meth:`predict`'s probabilities (uint8 when
        the ids fit, else int32)."""
        labels = _class_ids(prediction, self.num_classes)
        return [("label", labels.astype(np.uint8 if self.num_classes <= 255 else np.int32))]

    def draw_overlay(self, image: np.ndarray, prediction, alpha: float = 0.5) -> np.ndarray:
        """The palette colours of the predicted classes blended over ``image``: ``(1 - alpha) image + alpha
        colour``."""
        from densekd.engine.visualize import overlay

        return overlay(image, _class_ids(prediction, self.num_classes), self.palette, alpha=alpha,
                       ignore_index=self.ignore_index)

    # -- presentation -------------------------------------------------------------------------------------
    def _picture(self, labels) -> np.ndarray:
        from densekd.engine.visualize import colorize

        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"a segmentation picture is drawn from an H x W label map; got shape {labels.shape}")
        rgb = colorize(labels, self.palette)
        rgb[labels == self.ignore_index] = 0
        return rgb

    def draw_target(self, target) -> np.ndarray:
        """Label map ``H x W`` (train ids) -> palette colours, ignore pixels black."""
        return self._picture(target)

    def draw_prediction(self, prediction) -> np.ndarray:
        """Scores ``num_classes x H x W`` (arg-maxed) or class ids ``H x W`` -> palette colours."""
        if isinstance(prediction, torch.Tensor):
            prediction = prediction.detach().cpu().numpy()
        prediction = np.asarray(prediction)
        if prediction.ndim == 3:
            if prediction.shape[0] != self.num_classes:
                raise ValueError(f"prediction has {prediction.shape[0]} channels but the task has num_classes="
                                 f"{self.num_classes}")
            prediction = prediction.argmax(0)
        return self._picture(prediction)

    def legend(self) -> np.ndarray:
        from densekd.engine.visualize import legend

        return legend(self.class_names, self.palette)

    def metric_report(self, metrics: Mapping[str, float]) -> str:
        """Markdown table of the per-class IoUs (the ``IoU/<class>`` entries, in their order), or ''."""
        rows = [(k[len("IoU/"):], v) for k, v in metrics.items() if k.startswith("IoU/")]
        if not rows:
            return ""
        lines = ["| class | IoU (%) |", "|---|---|"]
        lines += [f"| {name} | {value:.2f} |" for name, value in rows]
        return "\n".join(lines) + "\n"
