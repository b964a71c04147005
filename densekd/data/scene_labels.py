"""Image-level labels from segmentation maps: a classification view of a dense dataset.

Used where an image classifier must be trained on a dense dataset that has no image labels -- e.g. the RGB
teacher of the cross-modal experiment on the synthetic NYU rooms, which stands in for an ImageNet classifier.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.registry import DATASETS

__all__ = ["DominantClassDataset", "dominant_class"]


def dominant_class(label: np.ndarray, num_classes: int, exclude: Sequence[int] = (), ignore_index: int = 255) -> int:
    """The most frequent class of ``label`` among ``0..num_classes-1`` not in ``exclude`` (ties: the smaller
    id); when no such pixel exists, the most frequent class overall (``exclude`` ignored), else 0."""
    ids = np.asarray(label).reshape(-1)
    ids = ids[(ids != ignore_index) & (ids >= 0) & (ids < num_classes)].astype(np.int64)
    counts = np.bincount(ids, minlength=num_classes)
    kept = counts.copy()
    kept[list(exclude)] = 0
    if kept.any():
        return int(kept.argmax())
    return int(counts.argmax()) if counts.any() else 0


@DATASETS.register()
class DominantClassDataset(Dataset):
    """Wrap a segmentation dataset (samples with ``image`` and a label map under ``label_key``): each sample
    keeps its keys and gains ``target`` = its dominant class (:func:`dominant_class`, e.g. excluding the
    structural wall / floor / ceiling classes so the label says which object fills the frame), plus
    ``.targets`` for the whole dataset (computed once from the raw label maps via ``load``).

    Args:
        dataset: the inner dataset (object or config dict); it must provide ``load(index)`` returning the raw
            sample with the label map under ``label_key`` -- a dict, or a tuple named by the dataset's ``load_keys``
            (the real and synthetic NYU and Cityscapes loaders).
        exclude: class ids never chosen while another class is present (default none).
        label_key: the label map's key in ``load(index)`` and in samples (default ``'label'``).
    """

    def __init__(self, dataset: Any, exclude: Sequence[int] = (), label_key: str = "label"):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, where="DominantClassDataset.dataset")
        self.dataset = dataset
        self.label_key = label_key
        self.exclude = tuple(int(c) for c in exclude)
        self.num_classes = int(getattr(dataset, "num_classes"))
        if not hasattr(dataset, "load"):
            raise ValueError(f"DominantClassDataset needs {type(dataset).__name__}.load(index) (the raw sample with "
                             f"its label map) to compute the image labels once")
        self.targets = [self._target_of(i) for i in range(len(dataset))]

    def _target_of(self, index: int) -> int:
        raw = self.dataset.load(index)
        if isinstance(raw, (tuple, list)):  # the loaders' convention: a tuple named by `load_keys`
            keys = getattr(self.dataset, "load_keys", None)
            if keys is None or len(keys) != len(raw):
                raise ValueError(f"DominantClassDataset: {type(self.dataset).__name__}.load returns a tuple but the "
                                 f"dataset declares no matching load_keys (the names of its entries)")
            raw = dict(zip(keys, raw))
        if not isinstance(raw, dict) or self.label_key not in raw:
            raise KeyError(f"DominantClassDataset: {type(self.dataset).__name__}.load({index}) has no "
                           f"{self.label_key!r} label map (set label_key)")
        ignore = int(getattr(self.dataset, "ignore_index", 255))
        return dominant_class(raw[self.label_key], self.num_classes, self.exclude, ignore)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["target"] = torch.tensor(self.targets[index])
        return item
