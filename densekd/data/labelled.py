"""Base for dataset wrappers that need each sample's class and its class-mates (CRD, CS-KD).

The inner dataset returns dict samples ``{'image': tensor, 'target': int, ...}`` and exposes ``.targets``
(one int label per sample). Class membership is precomputed once in O(N) memory: a class-sorted index order
plus, per sample, the start and size of its class block and its position inside it. Random draws use
numpy's *global* RNG, which the trainer seeds per sample (reproducible across resume and workers).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.registry import DATASETS


class ClassIndexedWrapper(Dataset):
    """Wrap a labelled dataset (object or config dict); ``len()``, ``targets`` and unknown attributes
    (``classes``, ``num_classes``...) are the inner dataset's."""

    min_samples = 1

    def __init__(self, dataset: Any, labels_needed: str | None = ""):
        """``labels_needed``: why the wrapper needs class labels (appended to the error when the inner dataset
        has no ``.targets``), or ``None`` when it can do without: an unlabelled dataset then counts as one
        class."""
        name = type(self).__name__
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, where=f"{name}.dataset")
        targets = getattr(dataset, "targets", None)
        if targets is None and labels_needed is None:
            targets = [0] * len(dataset)
        elif targets is None:
            raise ValueError(f"{name} needs the inner dataset to expose .targets (one int label per "
                             f"sample); {type(dataset).__name__} has none{labels_needed}")
        if torch.is_tensor(targets):
            targets = targets.detach().cpu().numpy()
        labels = np.asarray(targets)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise ValueError(f"{name}: .targets of {type(dataset).__name__} must be a 1-D sequence of int "
                             f"labels, got an array of shape {labels.shape} and dtype {labels.dtype}")
        n = len(dataset)
        if labels.shape[0] != n:
            raise ValueError(f"{name}: {type(dataset).__name__} has {n} samples but {labels.shape[0]} "
                             f"targets; .targets must have one label per sample")
        if n < self.min_samples:
            raise ValueError(f"{name} needs at least {self.min_samples} samples, got {n}")
        self.dataset = dataset
        self.targets = labels.astype(np.int64).tolist()
        labels = labels.astype(np.int64)
        # Samples sorted by class (stable: by index within a class); class c occupies a contiguous block.
        self._order = np.argsort(labels, kind="stable")
        classes, starts, counts = np.unique(labels[self._order], return_index=True, return_counts=True)
        self._num_label_values = len(classes)
        block = np.searchsorted(classes, labels)
        self._start = starts[block]             # per sample: start of its class block in _order
        self._count = counts[block]             # per sample: size of its class
        rank = np.empty(n, dtype=np.int64)
        rank[self._order] = np.arange(n)
        self._rank_in_class = rank - self._start  # per sample: its position inside its class block

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # forward e.g. .classes / .num_classes to the inner dataset
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def other_of_class(self, index: int) -> int:
        """A uniformly random *other* sample of ``index``'s class (``index`` itself if it is alone)."""
        count = int(self._count[index])
        if count < 2:
            return index
        r = int(np.random.choice(count - 1))  # a position among the other members of the class
        r += int(r >= self._rank_in_class[index])
        return int(self._order[self._start[index] + r])

    def inner_sample(self, index: int) -> tuple[int, dict]:
        """(normalised index, a copy of the inner dict sample)."""
        n = len(self.targets)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"{type(self).__name__} index {index} out of range for {n} samples")
        sample = self.dataset[index]
        if not isinstance(sample, dict):
            raise TypeError(f"{type(self).__name__} expects the inner dataset to return dict samples "
                            f"({{'image': ..., 'target': ...}}), got {type(sample).__name__}")
        return index, dict(sample)
