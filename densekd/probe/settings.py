"""The ``probe`` section of a config: what a linear probe reads and how it trains (every key optional)."""
from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

from densekd.config import Config, ConfigError

WD_GRID_GLOBAL = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
"""Default weight-decay grid of the pooled-feature classifier (a log grid; the loss is the mean cross-entropy
plus ``wd / 2 * ||W||^2`` on standardised features)."""
WD_GRID_DENSE = (1e-5, 1e-4, 1e-3)
"""Default weight-decay grid of the dense 1x1-conv head (SGD's ``weight_decay`` on the weights)."""
MODES = ("auto", "global", "dense")
CACHE_DTYPES = ("float32", "float16")


@dataclass
class ProbeSettings:
    """``probe = dict(...)`` in a config (``tools/linear_probe.py`` flags override ``layer`` and ``mode``).

    What is probed:
        layer: the tap whose features are probed: a module path (``layer3``, ``encoder.layer4``), ``path:input``,
            ``output`` / ``output.KEY``, or one entry of a tap group (``feats[-1]``); ``python tools/list_taps.py
            CONFIG`` lists them.
        mode: ``'global'`` (features average-pooled over space to N x C, a linear classifier), ``'dense'``
            (per-pixel N x C x h x w features, a 1x1 conv head whose scores are upsampled to the label maps) or
            ``'auto'`` (dense when the labels are maps, else global).
        model: the network (default: the config's ``model``, the student); CHECKPOINT's weights are loaded into it.
        input: the batch key it reads (default: the config's ``student_input``, ``'image'``).
        target: the batch key of the labels (class ids, or label maps with ``ignore_index``).
        data: ``dict(train=..., val=...)`` datasets to probe on (default: the config's ``data.train`` /
            ``data.val``): e.g. a model distilled on unlabelled images probed on a labelled split.
        augment: the value of ``augment`` for every dataset that takes one (default False: full, unaugmented
            images, so that the cached features are those of the images themselves); a dataset of ``probe.data``
            that sets ``augment`` itself keeps its value.
        num_classes: default: the train dataset's ``num_classes``, else ``task.num_classes``, else the largest
            label + 1.
        ignore_index: label value never counted (dense).
        batch_size, num_workers: of the extraction loader (default ``data.val_batch_size`` / ``data.num_workers``).

    The recipe (see :mod:`densekd.probe.linear`):
        heldout, seed: the fraction of the train split (stratified by class; whole images for dense) held out to
            choose the weight decay, and its seed.
        wd_grid: the weight decays tried (default :data:`WD_GRID_GLOBAL` / :data:`WD_GRID_DENSE`); one value
            skips the sweep.
        max_iter: L-BFGS iterations of each pooled-feature fit.
        dense_epochs, dense_lr, dense_batch_size: SGD schedule of the dense head (momentum 0.9, cosine to 0).
        dense_pool: average-pool dense features by this factor before caching (memory for large frames).

    The cache:
        cache_dtype: ``'float32'`` or ``'float16'`` (half the disk) for the cached features.
        cache_dir: where features are cached (default ``WORK_DIR/features``).
    """

    layer: str | None = None
    mode: str = "auto"
    model: dict | None = None
    input: str | None = None
    target: str = "target"
    data: dict | None = None
    augment: bool = False
    num_classes: int | None = None
    ignore_index: int = 255
    batch_size: int | None = None
    num_workers: int | None = None
    heldout: float = 0.1
    seed: int = 0
    wd_grid: Any = None
    max_iter: int = 500
    dense_epochs: int = 10
    dense_lr: float = 0.1
    dense_batch_size: int = 8
    dense_pool: int = 1
    cache_dtype: str = "float32"
    cache_dir: str | None = None

    @classmethod
    def from_config(cls, cfg: Config, **overrides: Any) -> "ProbeSettings":
        """The config's ``probe`` section with ``overrides`` (those that are not None) applied, checked."""
        section = copy.deepcopy(dict(cfg.get("probe") or {}))
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - names)
        if unknown:
            raise ConfigError(f"Unknown probe keys {unknown}; valid keys: {', '.join(sorted(names))}")
        section.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**section)
        settings.check()
        return settings

    def check(self) -> None:
        numbers = {"heldout": float, "seed": int, "max_iter": int, "dense_epochs": int, "dense_lr": float,
                   "dense_batch_size": int, "dense_pool": int, "ignore_index": int, "num_classes": int,
                   "batch_size": int, "num_workers": int}
        for key, kind in numbers.items():
            value = getattr(self, key)
            if value is None and key in ("num_classes", "batch_size", "num_workers"):
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or
                                                                                     float(value).is_integer())
            if not ok:
                raise ConfigError(f"probe.{key} takes {'a number' if kind is float else 'a whole number'}; got "
                                  f"{value!r}")
        for key in ("layer", "input", "target", "cache_dir"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"probe.{key} takes a string; got {value!r}")
        if self.mode not in MODES:
            raise ConfigError(f"probe.mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.cache_dtype not in CACHE_DTYPES:
            raise ConfigError(f"probe.cache_dtype must be one of {', '.join(CACHE_DTYPES)}; got {self.cache_dtype!r}")
        if not 0 <= float(self.heldout) < 1:
            raise ConfigError(f"probe.heldout is the fraction of the train split held out to choose the weight decay, "
                              f"in [0, 1); got {self.heldout!r}")
        grid = self.wd_grid
        if grid is not None:
            grid = [grid] if isinstance(grid, (int, float)) else list(grid)
            if not grid or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in grid):
                raise ConfigError(f"probe.wd_grid must be a non-empty list of weight decays >= 0; got {self.wd_grid!r}")
            self.wd_grid = [float(w) for w in grid]
        for key in ("max_iter", "dense_epochs", "dense_batch_size", "dense_pool"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"probe.{key} must be >= 1; got {getattr(self, key)!r}")

    def grid(self, mode: str) -> list[float]:
        """The weight decays tried in ``mode`` (``'global'`` or ``'dense'``)."""
        if self.wd_grid is not None:
            return list(self.wd_grid)
        return list(WD_GRID_DENSE if mode == "dense" else WD_GRID_GLOBAL)
