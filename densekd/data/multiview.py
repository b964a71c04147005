"""Dataset wrappers for cohorts of students: several augmented views of each sample, and a held-out split.

* :class:`MultiViewDataset` draws the inner dataset's augmentation ``views`` times per sample, so that each
  student of a cohort (KDCL: "each student is fed with a differently distorted version of the image") reads
  its own view, ``image_0`` ... ``image_{views-1}``, through ``strategy.student_inputs``.
* :class:`HoldoutSplit` splits a dataset once, reproducibly, into a training part and a held-out part; a
  strategy that fits something on held-out data (KDCL-Linear's ensemble weights, KDCL-General's error
  correlations) asks the training part for :meth:`HoldoutSplit.holdout_set`.

Both are registered datasets, compose with each other and with the other wrappers
(``MultiViewDataset(dataset=HoldoutSplit(dataset=CIFAR100(...)))``), and forward unknown attributes
(``num_classes``, ``class_names``...) to the inner dataset; ``--synthetic`` re-types the innermost dataset.
No method knowledge: the engine sees an ordinary dataset whose samples have more keys.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.registry import DATASETS

__all__ = ["MultiViewDataset", "HoldoutSplit", "find_wrapper"]


def _build(dataset: Any, where: str):
    return DATASETS.build(copy.deepcopy(dataset), where=where) if isinstance(dataset, dict) else dataset


def find_wrapper(dataset: Any, cls: type):
    """The first dataset of type ``cls`` in the chain ``dataset``, ``dataset.dataset``, ... (or None)."""
    seen = 0
    while dataset is not None and seen < 16:
        if isinstance(dataset, cls):
            return dataset
        dataset = getattr(dataset, "__dict__", {}).get("dataset")
        seen += 1
    return None


class _Forwarding(Dataset):
    """Unknown attributes are the inner dataset's (``self.dataset``)."""

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)


@DATASETS.register()
class MultiViewDataset(_Forwarding):
    """Item ``i``: the inner sample drawn ``views`` times; each key in ``keys`` becomes ``<key>_0`` ...
    ``<key>_{views-1}`` (one independent augmentation each), every other key (``target``, ``index``...) is
    taken from the first draw.

    The views differ because the inner dataset's augmentation draws from the global RNGs, which the loader
    seeds once per sample: successive draws are different and the whole sample is still a function of
    ``(seed, epoch, position)`` (exact resume, any number of workers). A dataset without augmentation gives
    identical views.

    Args:
        dataset: the inner dataset (object or config dict).
        views: number of views (>= 1), e.g. one per KDCL student.
        keys: the sample keys to draw per view (default ``('image',)``); the plain key is not kept.
    """

    def __init__(self, dataset: Any, views: int = 2, keys: Sequence[str] = ("image",)):
        self.dataset = _build(dataset, "MultiViewDataset.dataset")
        if int(views) < 1:
            raise ValueError(f"MultiViewDataset: views must be >= 1, got {views}")
        self.views = int(views)
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise ValueError("MultiViewDataset: keys is empty; name the sample keys to draw per view, e.g. ('image',)")

    def view_keys(self, key: str = "image") -> list[str]:
        return [f"{key}_{v}" for v in range(self.views)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        out: dict = {}
        for v in range(self.views):
            sample = self.dataset[index]
            if not isinstance(sample, dict):
                raise TypeError(f"MultiViewDataset expects dict samples from {type(self.dataset).__name__}, got "
                                f"{type(sample).__name__}")
            missing = [k for k in self.keys if k not in sample]
            if missing:
                raise KeyError(f"MultiViewDataset: the samples of {type(self.dataset).__name__} have no key(s) "
                               f"{missing} (they have {sorted(sample)}); set keys= to the keys to draw per view")
            if v == 0:
                out.update({k: x for k, x in sample.items() if k not in self.keys})
            for k in self.keys:
                out[f"{k}_{v}"] = sample[k]
        return out


@DATASETS.register()
class HoldoutSplit(_Forwarding):
    """One part of a fixed random split of ``dataset`` into training and held-out samples.

    The split is a permutation of ``range(len(dataset))`` by ``numpy.random.default_rng(seed)``: its first
    ``n_holdout`` indices (sorted) are the held-out part, the rest (sorted) the training part, so both parts
    are the same in every process and every session. ``holdout`` is a fraction of the dataset (``0 < h < 1``)
    or a number of samples (``>= 1``).

    :meth:`holdout_set` returns the complementary held-out part. When ``dataset`` is a config dict whose type
    takes ``augment``, the held-out part is built from a copy with ``augment=holdout_augment`` (default
    ``False``: held-out predictions are taken on the plain images); otherwise it shares the inner dataset.

    Args:
        dataset: the inner dataset (object or config dict).
        holdout: held-out fraction or count (default 0.1).
        part: ``'train'`` or ``'holdout'``.
        seed: the split's seed (default 0; independent of the run's seed, so seeds share the split).
        holdout_augment: augmentation of the held-out part built by :meth:`holdout_set`.
    """

    PARTS = ("train", "holdout")

    def __init__(self, dataset: Any, holdout: float = 0.1, part: str = "train", seed: int = 0,
                 holdout_augment: bool = False):
        if part not in self.PARTS:
            raise ValueError(f"HoldoutSplit: part must be one of {self.PARTS}, got {part!r}")
        self._spec = copy.deepcopy(dataset) if isinstance(dataset, dict) else None
        self.dataset = _build(dataset, "HoldoutSplit.dataset")
        n = len(self.dataset)
        n_hold = int(round(holdout * n)) if 0 < float(holdout) < 1 else int(holdout)
        if float(holdout) <= 0 or not 1 <= n_hold < n:
            raise ValueError(f"HoldoutSplit: holdout={holdout} gives {n_hold} held-out samples of {n}; give a "
                             f"fraction in (0, 1) or a count in [1, {n - 1}]")
        self.holdout, self.part, self.seed, self.holdout_augment = holdout, part, int(seed), bool(holdout_augment)
        self.n_holdout = n_hold
        perm = np.random.default_rng(self.seed).permutation(n)
        chosen = perm[:n_hold] if part == "holdout" else perm[n_hold:]
        self.indices = np.sort(chosen).astype(np.int64)
        targets = getattr(self.dataset, "targets", None)
        self.targets = None if targets is None else [int(targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def inner_index(self, index: int) -> int:
        return int(self.indices[index])

    def __getitem__(self, index: int):
        return self.dataset[self.inner_index(index)]

    def sample_files(self, index: int) -> list[str]:
        fn = getattr(self.dataset, "sample_files", None)
        return list(fn(self.inner_index(index))) if fn is not None else []

    def check_sample(self, index: int) -> None:
        """``tools/check_data.py``: the inner dataset's check of the sample this index maps to."""
        fn = getattr(self.dataset, "check_sample", None)
        if fn is not None:
            fn(self.inner_index(index))
        else:
            self.dataset[self.inner_index(index)]

    def holdout_set(self) -> "HoldoutSplit":
        """The held-out part of the same split (see the class docstring for its augmentation)."""
        inner: Any = self.dataset
        if self._spec is not None:
            spec = copy.deepcopy(self._spec)
            cls = DATASETS.get(spec["type"])
            if "augment" in inspect.signature(cls.__init__).parameters:
                spec["augment"] = self.holdout_augment
            inner = spec
        return HoldoutSplit(inner, holdout=self.holdout, part="holdout", seed=self.seed,
                            holdout_augment=self.holdout_augment)
