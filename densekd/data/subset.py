"""A fixed subset of another dataset: the small unlabeled sets of data-efficient distillation (active mixup).

``dict(type='SubsetDataset', dataset=dict(type='CIFAR100', split='train'), num_samples=1000, seed=0)`` keeps
``num_samples`` samples drawn without replacement by a generator seeded with ``seed`` (in increasing index
order), or exactly ``indices=[...]``. With ``--synthetic`` the inner dataset is replaced by its stand-in as
usual. ``targets`` are the kept samples' labels; ``num_classes``, ``class_names``, ``augment`` ... are the inner
dataset's.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from densekd.registry import DATASETS


@DATASETS.register()
class SubsetDataset(Dataset):
    """``num_samples`` seeded samples (or ``indices``) of ``dataset`` (an object or a config dict)."""

    def __init__(self, dataset: Any, num_samples: int | None = None, indices: list[int] | None = None, seed: int = 0):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, where="SubsetDataset.dataset")
        n = len(dataset)
        if (num_samples is None) == (indices is None):
            raise ValueError("SubsetDataset takes either num_samples=N (a seeded random subset) or indices=[...]")
        if indices is None:
            if not 1 <= int(num_samples) <= n:
                raise ValueError(f"SubsetDataset: num_samples={num_samples} must lie in 1..{n} (the inner "
                                 f"{type(dataset).__name__} has {n} samples)")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:int(num_samples)]
            indices = sorted(perm.tolist())
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < n]
        if not indices or bad:
            raise ValueError(f"SubsetDataset: indices must be a non-empty list in 0..{n - 1}; got {bad[:5] or 'none'}")
        self.dataset = dataset
        self.indices = indices
        targets = getattr(dataset, "targets", None)
        if targets is not None:
            self.targets = [int(targets[i]) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str) -> Any:  # num_classes, class_names, augment ... of the inner dataset
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def sample_files(self, index: int) -> list[str]:
        fn = getattr(self.dataset, "sample_files", None)
        return list(fn(self.indices[index])) if fn is not None else []

    def check_sample(self, index: int) -> None:
        fn = getattr(self.dataset, "check_sample", None)
        if fn is not None:
            fn(self.indices[index])
        else:
            self[index]
