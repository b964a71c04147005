"""A synthetic stand-in for TinyImageNet in its format, and the writer of its official folder tree.

:class:`SyntheticTinyImageNet` takes :class:`~densekd.data.tinyimagenet.TinyImageNet`'s arguments (``root``
accepted and ignored) plus ``num_samples`` and ``seed``: 64 x 64 x 3 uint8 pictures of 200 classes
(:mod:`densekd.data.synthetic_objects`), about 2 % of them greyscale (R = G = B, like the real greyscale
JPEGs), balanced classes, the same splits, keys and samples. :meth:`SyntheticTinyImageNet.write_tree` writes
them as a ``tiny-imagenet-200/`` tree (JPEGs, ``wnids.txt``, ``words.txt``, ``val/val_annotations.txt``) that
the real loader reads back (up to JPEG compression).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from densekd.data.synthetic_objects import ObjectClasses, balanced_labels
from densekd.data.tinyimagenet import NUM_CLASSES, _TinyImageNetBase, write_tinyimagenet_tree
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.data.views import LAB_MEAN, LAB_STD
from densekd.registry import DATASETS

DEFAULT_SIZES = {"train": 2000, "val": 400}
GREY_FRACTION = 0.02
#: synthetic WordNet-style ids (no real wnid starts with n99)
SYNTHETIC_WNIDS = tuple(f"n99{k:06d}" for k in range(NUM_CLASSES))
SYNTHETIC_NAMES = tuple(f"synthetic class {k}" for k in range(NUM_CLASSES))


@DATASETS.register()
class SyntheticTinyImageNet(_TinyImageNetBase):
    """Stand-in for :class:`~densekd.data.tinyimagenet.TinyImageNet` (module docstring).

    Extra args: ``num_samples`` (default 2,000 for train, 400 for val; classes balanced), ``seed``.
    """

    class_names = list(SYNTHETIC_NAMES)
    wnids = list(SYNTHETIC_WNIDS)

    def __init__(self, root: str | None = None, split: str = "train", keys: Sequence[str] = ("image",),
                 augment: bool | None = None, size: int | Sequence[int] | None = 64, crop: str = "pad",
                 crop_scale: Sequence[float] = (0.08, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 padding: int = 8, flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, lab_mean: Sequence[float] = LAB_MEAN,
                 lab_std: Sequence[float] = LAB_STD, num_samples: int | None = None, seed: int = 0):
        self._setup(split, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean, std, lab_mean,
                    lab_std)
        n = DEFAULT_SIZES[split] if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples!r}")
        self.root, self.seed = root, int(seed)
        self.objects = ObjectClasses(NUM_CLASSES, self.seed + 1)
        labels = balanced_labels(n, NUM_CLASSES, self.seed, f"tinyimagenet/{split}")
        if split == "train":  # the real train list is sorted by class
            labels = np.sort(labels, kind="stable")
        self.targets = labels.tolist()

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """(64 x 64 x 3 uint8, class index); deterministic per (split, index)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"SyntheticTinyImageNet {self.split} index {index} out of range for {n} images")
        index = int(index) % n
        c = self.targets[index]
        return self.objects.picture(c, f"tinyimagenet/{self.split}", index, 64, GREY_FRACTION), c

    @classmethod
    def write_tree(cls, root: str | os.PathLike, num_samples: dict[str, int] | int | None = None, seed: int = 0,
                   quality: int = 95) -> Path:
        """Write ``ROOT/tiny-imagenet-200/`` from the synthetic pictures (all 200 classes in ``wnids.txt``;
        ``num_samples``: an int for both splits or ``{'train': .., 'val': ..}``). ``TinyImageNet(root,
        split).targets`` then equals ``SyntheticTinyImageNet(split=split, ...).targets`` and its images are
        the same pictures up to JPEG compression (for train, with at least 200 pictures: the real loader needs
        a picture in every class folder, so fewer are raised to 200). Returns the folder."""
        sizes = dict(DEFAULT_SIZES)
        if isinstance(num_samples, dict):
            sizes.update(num_samples)
        elif num_samples is not None:
            sizes = {k: int(num_samples) for k in sizes}
        train = cls(split="train", num_samples=max(sizes["train"], NUM_CLASSES), seed=seed)
        per_class: dict[str, list[np.ndarray]] = {w: [] for w in SYNTHETIC_WNIDS}
        for i in range(len(train)):
            image, c = train.load(i)
            per_class[SYNTHETIC_WNIDS[c]].append(image)
        val = cls(split="val", num_samples=sizes["val"], seed=seed)
        pairs = [(img, SYNTHETIC_WNIDS[c]) for img, c in (val.load(i) for i in range(len(val)))]
        return write_tinyimagenet_tree(root, SYNTHETIC_WNIDS, per_class, pairs,
                                       words=dict(zip(SYNTHETIC_WNIDS, SYNTHETIC_NAMES)), quality=quality)

    def __repr__(self) -> str:
        return f"SyntheticTinyImageNet(split={self.split!r}, n={len(self)}, keys={self.keys}, augment={self.augment})"
