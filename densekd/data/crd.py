"""Dataset wrapper for CRD: adds each sample's index and its contrast indices (positive + negatives).

Reference: Tian et al., "Contrastive Representation Distillation", ICLR 2020; RepDistiller's
``dataset/cifar100.py`` (``CIFAR100InstanceSample``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from densekd.data.labelled import ClassIndexedWrapper
from densekd.registry import DATASETS

__all__ = ["CRDSampleDataset", "EXACT_POOL", "distinct_draws"]

#: the largest candidate pool for which negatives are drawn exactly as the reference (``np.random.choice``
#: without replacement); CIFAR-100 (49,500 candidates) and STL-10 (104,999) stay below it, ImageNet does not.
EXACT_POOL = 500_000


def distinct_draws(pool: int, k: int) -> np.ndarray:
    """``k`` distinct integers of ``0 .. pool - 1`` (``k <= pool``), uniformly over the ``k``-subsets, from
    numpy's global RNG: ``np.random.choice(pool, k, replace=False)`` for pools up to :data:`EXACT_POOL`, else
    rejection of repeats (fast when ``k`` is much smaller than ``pool``)."""
    if pool <= EXACT_POOL or 2 * k > pool:
        return np.random.choice(pool, k, replace=False)
    draws = np.random.randint(0, pool, k).astype(np.int64)
    while True:
        _, first = np.unique(draws, return_index=True)
        if len(first) == k:
            return draws
        repeat = np.ones(k, dtype=bool)
        repeat[first] = False
        draws[repeat] = np.random.randint(0, pool, int(repeat.sum()))


@DATASETS.register()
class CRDSampleDataset(ClassIndexedWrapper):
    """Wrap a labelled dataset so that each sample also carries ``'index'`` and ``'contrast_idx'`` for CRD.

    Tian et al., ICLR 2020 (RepDistiller's ``CIFAR100InstanceSample``). The inner dataset returns dict
    samples ``{'image': tensor, 'target': int, ...}`` and exposes ``.targets`` (one int label per sample).
    Item ``i`` of the wrapper is the inner sample plus

    * ``'index'``: ``i`` (int), the row of the CRD memory bank for this sample;
    * ``'contrast_idx'``: ``LongTensor`` of shape ``(nce_k + 1,)``, the positive first, then ``nce_k``
      negatives (batched by the default collate to ``B x (nce_k + 1)``, what :class:`~densekd.losses.CRD`
      expects).

    ``mode='exact'`` (the reference default): the positive is the sample itself -- with
    ``sampling='any'`` the inner dataset needs no labels (CRD's cross-modal transfer: the two modalities of
    one frame are the positive pair, every other frame a negative). ``mode='relax'``: the
    positive is a random *other* sample of the same class (the reference may also draw the sample itself;
    here it does so only when the class has a single sample).
    ``sampling='class'`` (the paper's best, the reference): negatives are drawn from the samples of the
    other classes; ``sampling='any'``: from every sample except the anchor itself. Negatives are drawn
    without replacement unless ``nce_k`` exceeds the number of candidates (then with replacement), as the
    reference. For ``sampling='class'`` the draws are identical to the reference's for the same numpy
    seed (same candidate order: by class, then by index) while the pool has at most :data:`EXACT_POOL`
    candidates. The reference's ``np.random.choice(pool, nce_k, replace=False)`` permutes the whole pool for
    every sample: 55 ms for ImageNet's 1.28 M candidates (14 s of worker time per batch of 256), so for larger
    pools ``nce_k`` distinct negatives are drawn by rejection instead (uniform draws with replacement, the
    repeated ones drawn again until all differ: about 1 ms; every ``nce_k``-subset of the pool equally likely, as
    with the reference, but other draws for the same seed). The reference's ``percent`` option (a fixed
    random subset of negatives) is not implemented.

    Sampling uses numpy's *global* RNG (``np.random.choice``), seeded per sample by the trainer; class
    membership comes from :class:`~densekd.data.labelled.ClassIndexedWrapper`.

    Args:
        dataset: the inner dataset object, or its config dict (built with ``DATASETS.build``).
        nce_k: negatives per sample (RepDistiller's CIFAR-100 recipe: 16384; must equal the loss's nce_k).
        mode: ``'exact'`` or ``'relax'``. sampling: ``'class'`` or ``'any'``.

    Attributes ``targets`` (list of int) and ``len()`` are the inner dataset's; other attributes
    (``classes``, ``num_classes``...) are forwarded to the inner dataset.
    """

    MODES = ("exact", "relax")
    SAMPLINGS = ("class", "any")

    min_samples = 2  # negatives need another sample

    def __init__(self, dataset: Any, nce_k: int = 16384, mode: str = "exact", sampling: str = "class"):
        if mode not in self.MODES:
            raise ValueError(f"CRDSampleDataset mode must be one of {self.MODES}, got {mode!r}")
        if sampling not in self.SAMPLINGS:
            raise ValueError(f"CRDSampleDataset sampling must be one of {self.SAMPLINGS}, got {sampling!r}")
        if isinstance(nce_k, bool) or not isinstance(nce_k, (int, np.integer)) or nce_k < 1:
            raise ValueError(f"CRDSampleDataset nce_k (negatives per sample) must be an int >= 1, got {nce_k!r}")
        unlabelled_ok = mode == "exact" and sampling == "any"
        super().__init__(dataset, labels_needed=None if unlabelled_ok else
                         f" (mode={mode!r}, sampling={sampling!r} use classes); for unlabelled data such as "
                         f"cross-modal frame pairs use mode='exact', sampling='any'")
        self.nce_k = int(nce_k)
        self.mode = mode
        self.sampling = sampling
        if sampling == "class" and self._num_label_values < 2:
            raise ValueError("CRDSampleDataset sampling='class' draws negatives from other classes, but the "
                             f"dataset has a single class ({self.targets[0]}); use sampling='any'")

    def _positive(self, index: int) -> int:
        return index if self.mode == "exact" else self.other_of_class(index)

    def _negatives(self, index: int) -> np.ndarray:
        n = len(self.targets)
        if self.sampling == "class":
            start, count = int(self._start[index]), int(self._count[index])
            pool = n - count
            j = self._draw(pool)
            return self._order[np.where(j >= start, j + count, j)]
        pool = n - 1
        j = self._draw(pool)
        return np.where(j >= index, j + 1, j)

    def _draw(self, pool: int) -> np.ndarray:
        if self.nce_k > pool:  # fewer candidates than negatives: with replacement, as the reference
            return np.random.choice(pool, self.nce_k, replace=True)
        return distinct_draws(pool, self.nce_k)

    def __getitem__(self, index: int) -> dict:
        index, out = self.inner_sample(index)
        pos = self._positive(index)
        neg = self._negatives(index)
        out["index"] = index
        out["contrast_idx"] = torch.from_numpy(np.concatenate(([pos], neg)).astype(np.int64))
        return out
