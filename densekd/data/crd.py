"""Dataset wrapper for CRD: adds each sample's index and its contrast indices (positive + negatives).

Reference: Tian et al., "Contrastive Representation Distillation", ICLR 2020; RepDistiller's
``dataset/cifar100.py`` (``CIFAR100InstanceSample``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.registry import DATASETS

__all__ = ["CRDSampleDataset"]


@DATASETS.register()
class CRDSampleDataset(Dataset):
    """Wrap a labelled dataset so that each sample also carries ``'index'`` and ``'contrast_idx'`` for CRD.

    Tian et al., ICLR 2020 (RepDistiller's ``CIFAR100InstanceSample``). The inner dataset returns dict
    samples ``{'image': tensor, 'target': int, ...}`` and exposes ``.targets`` (one int label per sample).
    Item ``i`` of the wrapper is the inner sample plus

    * ``'index'``: ``i`` (int), the row of the CRD memory bank for this sample;
    * ``'contrast_idx'``: ``LongTensor`` of shape ``(nce_k + 1,)``, the positive first, then ``nce_k``
      negatives (batched by the default collate to ``B x (nce_k + 1)``, what :class:`~densekd.losses.CRD`
      expects).

    ``mode='exact'`` (the reference default): the positive is the sample itself. ``mode='relax'``: the
    positive is a random *other* sample of the same class (the reference may also draw the sample itself;
    here it does so only when the class has a single sample).
    ``sampling='class'`` (the paper's best, the reference): negatives are drawn from the samples of the
    other classes; ``sampling='any'``: from every sample except the anchor itself. Negatives are drawn
    without replacement unless ``nce_k`` exceeds the number of candidates (then with replacement), as the
    reference. For ``sampling='class'`` the draws are identical to the reference's for the same numpy
    seed (same candidate order: by class, then by index). The reference's ``percent`` option (a fixed
    random subset of negatives) is not implemented.

    Sampling uses numpy's *global* RNG (``np.random.choice``): the trainer seeds the global RNGs per
    sample, which makes the draws reproducible across resume and data-loader workers. Class index lists
    are precomputed once at init in O(N) memory (a class-sorted index order plus block offsets).

    Args:
        dataset: the inner dataset object, or its config dict (built with ``DATASETS.build``).
        nce_k: negatives per sample (RepDistiller's CIFAR-100 recipe: 16384; must equal the loss's nce_k).
        mode: ``'exact'`` or ``'relax'``. sampling: ``'class'`` or ``'any'``.

    Attributes ``targets`` (list of int) and ``len()`` are the inner dataset's; other attributes
    (``classes``, ``num_classes``...) are forwarded to the inner dataset.
    """

    MODES = ("exact", "relax")
    SAMPLINGS = ("class", "any")

    def __init__(self, dataset: Any, nce_k: int = 16384, mode: str = "exact", sampling: str = "class"):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, where="CRDSampleDataset.dataset")
        if mode not in self.MODES:
            raise ValueError(f"CRDSampleDataset mode must be one of {self.MODES}, got {mode!r}")
        if sampling not in self.SAMPLINGS:
            raise ValueError(f"CRDSampleDataset sampling must be one of {self.SAMPLINGS}, got {sampling!r}")
        if isinstance(nce_k, bool) or not isinstance(nce_k, (int, np.integer)) or nce_k < 1:
            raise ValueError(f"CRDSampleDataset nce_k (negatives per sample) must be an int >= 1, got {nce_k!r}")
        targets = getattr(dataset, "targets", None)
        if targets is None:
            raise ValueError(f"CRDSampleDataset needs the inner dataset to expose .targets (one int label per "
                             f"sample); {type(dataset).__name__} has none")
        if torch.is_tensor(targets):
            targets = targets.detach().cpu().numpy()
        labels = np.asarray(targets)
        if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
            raise ValueError(f"CRDSampleDataset: .targets of {type(dataset).__name__} must be a 1-D sequence of int "
                             f"labels, got an array of shape {labels.shape} and dtype {labels.dtype}")
        n = len(dataset)
        if labels.shape[0] != n:
            raise ValueError(f"CRDSampleDataset: {type(dataset).__name__} has {n} samples but {labels.shape[0]} "
                             f"targets; .targets must have one label per sample")
        if n < 2:
            raise ValueError(f"CRDSampleDataset needs at least 2 samples to draw negatives, got {n}")

        self.dataset = dataset
        self.nce_k = int(nce_k)
        self.mode = mode
        self.sampling = sampling
        self.targets = labels.astype(np.int64).tolist()

        labels = labels.astype(np.int64)
        # Samples sorted by class (stable: by index within a class); class c occupies a contiguous block.
        self._order = np.argsort(labels, kind="stable")
        classes, starts, counts = np.unique(labels[self._order], return_index=True, return_counts=True)
        block = np.searchsorted(classes, labels)
        self._start = starts[block]             # per sample: start of its class block in _order
        self._count = counts[block]             # per sample: size of its class
        rank = np.empty(n, dtype=np.int64)
        rank[self._order] = np.arange(n)
        self._rank_in_class = rank - self._start  # per sample: its position inside its class block
        if sampling == "class" and len(classes) < 2:
            raise ValueError("CRDSampleDataset sampling='class' draws negatives from other classes, but the "
                             f"dataset has a single class ({int(classes[0])}); use sampling='any'")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # forward e.g. .classes / .num_classes to the inner dataset
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def _positive(self, index: int) -> int:
        if self.mode == "exact":
            return index
        count = int(self._count[index])
        if count < 2:
            return index
        r = int(np.random.choice(count - 1))  # a position among the other members of the class
        r += int(r >= self._rank_in_class[index])
        return int(self._order[self._start[index] + r])

    def _negatives(self, index: int) -> np.ndarray:
        n = len(self.targets)
        if self.sampling == "class":
            start, count = int(self._start[index]), int(self._count[index])
            pool = n - count
            j = np.random.choice(pool, self.nce_k, replace=self.nce_k > pool)
            return self._order[np.where(j >= start, j + count, j)]
        pool = n - 1
        j = np.random.choice(pool, self.nce_k, replace=self.nce_k > pool)
        return np.where(j >= index, j + 1, j)

    def __getitem__(self, index: int) -> dict:
        n = len(self.targets)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"CRDSampleDataset index {index} out of range for {n} samples")
        sample = self.dataset[index]
        if not isinstance(sample, dict):
            raise TypeError(f"CRDSampleDataset expects the inner dataset to return dict samples "
                            f"({{'image': ..., 'target': ...}}), got {type(sample).__name__}")
        out = dict(sample)
        pos = self._positive(index)
        neg = self._negatives(index)
        out["index"] = index
        out["contrast_idx"] = torch.from_numpy(np.concatenate(([pos], neg)).astype(np.int64))
        return out
