"""Linear classifiers on frozen features, with the weight decay chosen on a held-out part of the train split.

Pooled features (``N x C``), :func:`probe_global`:

1. Standardise every feature with the mean and standard deviation of the training features (std floored at
   1e-6; the same statistics apply to the test features).
2. Multinomial logistic regression ``softmax(x W + b)``, trained full-batch with L-BFGS (strong-Wolfe line
   search, ``max_iter`` iterations, history 20) from zero on ``mean cross-entropy + wd / 2 * ||W||^2`` (the bias
   is not decayed). The objective is convex, so the result does not depend on a seed.
3. Weight-decay sweep: a held-out ``heldout`` fraction of the train split (stratified by class, seeded) is set
   aside; for each ``wd`` of the grid (tried from the largest down, each fit warm-started from the previous
   one) the classifier is fitted on the rest and scored on the held-out part (top-1). The best ``wd`` wins (on
   ties the larger, more regularised one). A grid of one value is not swept; when nothing can be held out
   (``heldout=0``, one sample per class) the grid's median is used.
4. The classifier is fitted again on the whole train split with that ``wd`` (statistics of the whole split) and
   evaluated on the test split: top-1 and, with 5 classes or more, top-5 (percent).

Dense features (``N x C x h x w`` with ``N x H x W`` label maps, ``ignore_index`` never counted),
:func:`probe_dense`: the same standardisation per channel (over every pixel of the training images), a 1x1
convolution from zero whose scores are upsampled bilinearly to the label resolution, pixel-wise cross-entropy;
SGD (momentum 0.9, ``weight_decay`` on the weights only) with a cosine learning rate from ``lr`` to 0 over
``epochs`` passes of ``batch_size`` images; the same held-out sweep with whole images held out (mIoU) and the
final fit on the whole train split, evaluated by densekd's segmentation metrics (mIoU, pixel and mean class
accuracy, percent).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from densekd.metrics.classification import topk_correct
from densekd.metrics.segmentation import confusion_matrix, segmentation_metrics


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held_out)`` sample indices: about ``fraction`` of each class held out (at least one sample of every
    class that has two or more, none of a class with one), drawn with ``seed``. Both sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2 or fraction <= 0:
            continue
        k = min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        held.append(rng.choice(idx, size=k, replace=False))
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    fit_idx = np.setdiff1d(np.arange(len(labels)), held_idx)
    return fit_idx, held_idx


def random_holdout(n: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(fit, held_out)``: ``round(fraction * n)`` random indices held out (at least one when ``n >= 2`` and the
    fraction is positive), sorted."""
    k = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, int(round(fraction * n))))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


# -- pooled features: multinomial logistic regression ------------------------------------------------------------
@dataclass
class LinearClassifier:
    """``scores = ((x - mean) / std) @ weight + bias``."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # C x K
    bias: torch.Tensor  # K
    iterations: int = 0
    loss: float = float("nan")

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std) @ self.weight + self.bias


def standardisation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (floored at 1e-6) of ``x`` (N x C)."""
    x64 = x.double()
    return x64.mean(0).float(), x64.std(0, unbiased=False).clamp_min(1e-6).float()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, wd: float, max_iter: int = 500,
                 init: LinearClassifier | None = None) -> LinearClassifier:
    """Multinomial logistic regression on standardised ``x`` (N x C, float) and labels ``y`` (N, int64) by
    full-batch L-BFGS on ``mean CE + wd / 2 * ||W||^2``, from zero or from ``init``'s weights."""
    mean, std = standardisation(x)
    z = (x - mean) / std
    if init is not None:
        w, b = init.weight.detach().clone(), init.bias.detach().clone()
    else:
        w = torch.zeros(x.shape[1], num_classes, device=x.device)
        b = torch.zeros(num_classes, device=x.device)
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=int(max_iter), history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(z @ w + b, y) + 0.5 * wd * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    iterations = int(opt.state[w].get("n_iter", 0)) if w in opt.state else 0
    w, b = w.detach(), b.detach()
    with torch.no_grad():
        loss = F.cross_entropy(z @ w + b, y) + 0.5 * wd * (w * w).sum()
    return LinearClassifier(mean, std, w, b, iterations, float(loss))


def topk_percent(scores: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``{'top1': ...}`` and ``'top5'`` when there are 5 classes or more, percent of ``y``."""
    ks = (1, 5) if num_classes >= 5 else (1,)
    hits = topk_correct(scores, y, ks)
    return {f"top{k}": 100.0 * h / max(len(y), 1) for k, h in zip(ks, hits)}


def _unswept(grid: list[float], log: Callable[[str], None]) -> tuple[float, str]:
    """The weight decay when nothing is swept: the only one of the grid, else (nothing could be held out) the
    grid's median."""
    if len(grid) == 1:
        return grid[0], "the only value of the grid"
    log(f"nothing to hold out for the weight-decay sweep; using the median of the grid, {grid[len(grid) // 2]:g}")
    return grid[len(grid) // 2], "median of the grid (nothing held out)"


def _choose(rows: list[dict], key: str) -> dict:
    """The sweep row with the best ``key``; ties go to the larger weight decay."""
    return max(rows, key=lambda r: (r[key], r["wd"]))


def probe_global(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, grid: list[float], heldout: float = 0.1, seed: int = 0, max_iter: int = 500,
                 progress: Callable = lambda it, **kw: it, log: Callable[[str], None] = lambda _m: None) -> dict:
    """The pooled-feature recipe of the module docstring. Returns ``metrics`` (``top1``, ``top5``), ``wd``,
    ``sweep`` (one row per weight decay: ``wd``, ``heldout_top1``, ``fit_top1``, ``iterations``), the split sizes
    and ``timings_s``."""
    t0 = time.perf_counter()
    grid = sorted(set(float(w) for w in grid), reverse=True)
    fit_idx, held_idx = stratified_holdout(train_y.cpu().numpy(), heldout if len(grid) > 1 else 0.0, seed)
    rows: list[dict] = []
    if len(grid) > 1 and len(held_idx):
        fi, hi = torch.as_tensor(fit_idx, device=train_x.device), torch.as_tensor(held_idx, device=train_x.device)
        xf, yf, xh, yh = train_x[fi], train_y[fi], train_x[hi], train_y[hi]
        prev = None
        for wd in progress(grid, desc="wd sweep", unit="wd"):
            clf = fit_logistic(xf, yf, num_classes, wd, max_iter, init=prev)
            prev = clf
            row = {"wd": wd, "heldout_top1": topk_percent(clf.scores(xh), yh, num_classes)["top1"],
                   "fit_top1": topk_percent(clf.scores(xf), yf, num_classes)["top1"], "iterations": clf.iterations,
                   "loss": clf.loss}
            log(f"wd {wd:g}: held-out top-1 {row['heldout_top1']:.2f}, fit top-1 {row['fit_top1']:.2f} "
                f"({clf.iterations} L-BFGS iterations)")
            rows.append(row)
        chosen, selected_by = _choose(rows, "heldout_top1")["wd"], "held-out top-1"
    else:
        chosen, selected_by = _unswept(grid, log)
    t1 = time.perf_counter()
    clf = fit_logistic(train_x, train_y, num_classes, chosen, max_iter)
    metrics = topk_percent(clf.scores(test_x), test_y, num_classes)
    train_top1 = topk_percent(clf.scores(train_x), train_y, num_classes)["top1"]
    t2 = time.perf_counter()
    return {"metrics": metrics, "train_top1": train_top1, "wd": chosen, "selected_by": selected_by, "sweep": sorted(rows, key=lambda r: r["wd"]),
            "n_fit": int(len(fit_idx)), "n_heldout": int(len(held_idx)), "final_iterations": clf.iterations,
            "timings_s": {"sweep": t1 - t0, "final": t2 - t1}}


# -- dense features: a 1x1 conv head ----------------------------------------------------------------------------
def channel_standardisation(feats, indices: np.ndarray, batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (floored at 1e-6) over every pixel of ``feats[indices]`` (N x C x h x w array,
    e.g. a memory map), read ``batch`` images at a time."""
    total = sq = None
    count = 0
    for start in range(0, len(indices), batch):
        x = torch.from_numpy(np.asarray(feats[indices[start:start + batch]], dtype=np.float64))
        s, s2 = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        total, sq = (s, s2) if total is None else (total + s, sq + s2)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.float(), std.float()


@dataclass
class DenseHead:
    mean: torch.Tensor
    std: torch.Tensor
    conv: torch.nn.Conv2d
    steps: int = 0
    loss: float = float("nan")

    def scores(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Class scores of features ``x`` (B x C x h x w) upsampled bilinearly to ``size`` (H, W)."""
        z = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        out = self.conv(z)
        return out if tuple(out.shape[-2:]) == tuple(size) else \
            F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def _batch(feats, labels, idx: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor]:
    order = np.sort(idx)  # memory maps read faster in order
    x = torch.from_numpy(np.asarray(feats[order], dtype=np.float32)).to(device)
    y = torch.from_numpy(np.asarray(labels[order]).astype(np.int64)).to(device)
    return x, y


def fit_dense(feats, labels, indices: np.ndarray, num_classes: int, wd: float, epochs: int = 10, lr: float = 0.1,
              batch_size: int = 8, ignore_index: int = 255, seed: int = 0, max_steps: int | None = None,
              device: torch.device | str = "cpu") -> DenseHead:
    """Train the 1x1 conv head of the module docstring on ``feats[indices]`` / ``labels[indices]``."""
    device = torch.device(device)
    mean, std = channel_standardisation(feats, indices)
    conv = torch.nn.Conv2d(feats.shape[1], num_classes, 1).to(device)
    torch.nn.init.zeros_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    head = DenseHead(mean.to(device), std.to(device), conv)
    opt = torch.optim.SGD([{"params": [conv.weight], "weight_decay": wd}, {"params": [conv.bias], "weight_decay": 0.0}],
                          lr=lr, momentum=0.9)
    per_epoch = max(1, math.ceil(len(indices) / batch_size))
    total = per_epoch * int(epochs)
    if max_steps is not None:
        total = min(total, int(max_steps))
    rng = np.random.default_rng(seed)
    step, loss = 0, torch.tensor(float("nan"))
    size = tuple(labels.shape[-2:])
    with torch.enable_grad():
        while step < total:
            perm = rng.permutation(indices)
            for start in range(0, len(perm), batch_size):
                if step >= total:
                    break
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                x, y = _batch(feats, labels, perm[start:start + batch_size], device)
                if not bool((y != ignore_index).any()):
                    step += 1
                    continue
                loss = F.cross_entropy(head.scores(x, size), y, ignore_index=ignore_index)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    conv.requires_grad_(False)
    head.steps, head.loss = step, float(loss.detach())
    return head


@torch.no_grad()
def evaluate_dense(head: DenseHead, feats, labels, indices: np.ndarray, num_classes: int, ignore_index: int = 255,
                   batch_size: int = 8, device: torch.device | str = "cpu") -> dict[str, float]:
    """mIoU, pixel accuracy and mean class accuracy (percent) of ``head`` on ``feats[indices]``."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    size = tuple(labels.shape[-2:])
    for start in range(0, len(indices), batch_size):
        x, y = _batch(feats, labels, indices[start:start + batch_size], device)
        pred = head.scores(x, size).argmax(1)
        cm += confusion_matrix(pred.cpu(), y.cpu(), num_classes, ignore_index)
    m = segmentation_metrics(cm)
    return {"mIoU": m["mIoU"], "pixel_acc": m["pixel_acc"], "mean_acc": m["mean_acc"]}


def probe_dense(train_feats, train_labels, test_feats, test_labels, num_classes: int, grid: list[float],
                heldout: float = 0.1, seed: int = 0, epochs: int = 10, lr: float = 0.1, batch_size: int = 8,
                ignore_index: int = 255, max_steps: int | None = None, device: torch.device | str = "cpu",
                progress: Callable = lambda it, **kw: it, log: Callable[[str], None] = lambda _m: None) -> dict:
    """The dense recipe of the module docstring. Returns ``metrics`` (``mIoU``, ``pixel_acc``, ``mean_acc``),
    ``wd``, ``sweep`` (``wd``, ``heldout_mIoU``, ``heldout_pixel_acc``), split sizes and ``timings_s``."""
    t0 = time.perf_counter()
    grid = sorted(set(float(w) for w in grid), reverse=True)
    n = len(train_feats)
    fit_idx, held_idx = random_holdout(n, heldout if len(grid) > 1 else 0.0, seed)
    kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, ignore_index=ignore_index, seed=seed, max_steps=max_steps,
              device=device)
    rows: list[dict] = []
    if len(grid) > 1 and len(held_idx):
        for wd in progress(grid, desc="wd sweep", unit="wd"):
            head = fit_dense(train_feats, train_labels, fit_idx, num_classes, wd, **kw)
            m = evaluate_dense(head, train_feats, train_labels, held_idx, num_classes, ignore_index, batch_size, device)
            row = {"wd": wd, "heldout_mIoU": m["mIoU"], "heldout_pixel_acc": m["pixel_acc"], "steps": head.steps,
                   "loss": head.loss}
            log(f"wd {wd:g}: held-out mIoU {m['mIoU']:.2f}, pixel acc {m['pixel_acc']:.2f} ({head.steps} SGD steps)")
            rows.append(row)
        scored = [dict(r, _key=-1.0 if math.isnan(r["heldout_mIoU"]) else r["heldout_mIoU"]) for r in rows]
        chosen, selected_by = _choose(scored, "_key")["wd"], "held-out mIoU"
    else:
        chosen, selected_by = _unswept(grid, log)
    t1 = time.perf_counter()
    head = fit_dense(train_feats, train_labels, np.arange(n), num_classes, chosen, **kw)
    metrics = evaluate_dense(head, test_feats, test_labels, np.arange(len(test_feats)), num_classes, ignore_index,
                             batch_size, device)
    t2 = time.perf_counter()
    return {"metrics": metrics, "wd": chosen, "selected_by": selected_by, "sweep": sorted(rows, key=lambda r: r["wd"]),
            "n_fit": int(len(fit_idx)), "n_heldout": int(len(held_idx)), "final_steps": head.steps,
            "timings_s": {"sweep": t1 - t0, "final": t2 - t1}}
