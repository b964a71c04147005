"""A synthetic stand-in for STL-10 in its format, and the writer of its official binary tree.

:class:`SyntheticSTL10` takes :class:`~densekd.data.stl10.STL10`'s arguments (``root`` is accepted and
ignored) plus ``num_samples`` and ``seed``, and yields the same samples: 96 x 96 x 3 uint8 pictures of ten
classes (:mod:`densekd.data.synthetic_objects`: class silhouette, hue and texture, so both the ``L`` and the
``ab`` view carry the class), the same splits (``train``, ``test``, ``unlabeled``, ``train+unlabeled``), ten
training folds of a fifth of the train images each (the real folds: 1,000 of 5,000), the same keys. The
unlabelled pictures are drawn from the ten classes, their labels hidden. :meth:`SyntheticSTL10.write_tree`
writes the pictures as ``stl10_binary/`` files that the real loader reads back image for image.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from densekd.data.stl10 import STL10_CLASSES, _parts, _STL10Base, write_stl10_binary
from densekd.data.synthetic_objects import ObjectClasses, balanced_labels, stream_seed
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.data.views import LAB_MEAN, LAB_STD
from densekd.registry import DATASETS

DEFAULT_SIZES = {"train": 500, "test": 300, "unlabeled": 1000}


def _part_sizes(num_samples) -> dict[str, int]:
    sizes = dict(DEFAULT_SIZES)
    if num_samples is None:
        return sizes
    if isinstance(num_samples, dict):
        unknown = set(num_samples) - set(sizes)
        if unknown:
            raise ValueError(f"num_samples keys must be among {sorted(sizes)}; got {sorted(unknown)}")
        sizes.update({k: int(v) for k, v in num_samples.items()})
    else:
        sizes = {k: int(num_samples) for k in sizes}
    if min(sizes.values()) < 1:
        raise ValueError(f"num_samples must be >= 1 per part; got {num_samples!r}")
    return sizes


def synthetic_folds(n_train: int, seed: int = 0) -> list[np.ndarray]:
    """Ten folds of ``max(1, n_train // 5)`` sorted train indices each (like 1,000 of 5,000)."""
    m = max(1, n_train // 5)
    return [np.sort(np.random.default_rng([seed, stream_seed("fold"), k]).choice(n_train, m, replace=False))
            for k in range(10)]


@DATASETS.register()
class SyntheticSTL10(_STL10Base):
    """Stand-in for :class:`~densekd.data.stl10.STL10` (module docstring).

    Extra args: ``num_samples``: images per file part of the split (an int for every part, or a dict such as
    ``{'train': 100, 'unlabeled': 400}``; defaults train 500, test 300, unlabeled 1,000), ``seed``,
    ``colour_cue``: the fraction of objects drawn in their class's hue (default 1: all; the others get a random
    hue, so that the ``ab`` view shows the class mostly through shape and texture, see
    :mod:`densekd.data.synthetic_objects`).
    """

    def __init__(self, root: str | None = None, split: str = "train", fold: int | None = None,
                 keys: Sequence[str] = ("image",), augment: bool | None = None, size: int | Sequence[int] | None = 96,
                 crop: str = "pad", crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), padding: int = 12, flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 lab_mean: Sequence[float] = LAB_MEAN, lab_std: Sequence[float] = LAB_STD,
                 num_samples: int | dict | None = None, seed: int = 0, colour_cue: float = 1.0):
        self._setup(split, fold, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean, std,
                    lab_mean, lab_std)
        self.root, self.seed = root, int(seed)
        if not 0.0 <= float(colour_cue) <= 1.0:
            raise ValueError(f"colour_cue is the fraction of objects drawn in their class's hue, in [0, 1]; got "
                             f"{colour_cue!r}")
        self.colour_cue = float(colour_cue)
        self._sizes = _part_sizes(num_samples)
        self.objects = ObjectClasses(len(STL10_CLASSES), self.seed)
        # every part has class labels; those of 'unlabeled' are hidden (its pictures still show the classes)
        self._classes = {p: balanced_labels(self._sizes[p], len(STL10_CLASSES), self.seed, f"stl10/{p}")
                         for p in DEFAULT_SIZES}
        self.folds = synthetic_folds(self._sizes["train"], self.seed)
        labels = {p: self._classes[p] for p in ("train", "test")}
        self._set_parts({p: self._sizes[p] for p in _parts(split)}, labels, self.folds)

    def read_image(self, part: str, j: int) -> np.ndarray:
        return self.objects.picture(self._classes[part][j], f"stl10/{part}", j, 96, colour_cue=self.colour_cue)

    def part_images(self, part: str) -> np.ndarray:
        """Every picture of a file part, N x 96 x 96 x 3 uint8, in file order."""
        return np.stack([self.read_image(part, j) for j in range(self._sizes[part])])

    @classmethod
    def write_tree(cls, root: str | os.PathLike, num_samples: int | dict | None = None, seed: int = 0,
                   colour_cue: float = 1.0) -> Path:
        """Write ``ROOT/stl10_binary/`` (train / test / unlabeled images and labels, ``fold_indices.txt``,
        ``class_names.txt``) from the synthetic pictures; ``STL10(root, split, fold).load(i)`` then equals
        ``SyntheticSTL10(split=split, fold=fold, num_samples=num_samples, seed=seed,
        colour_cue=colour_cue).load(i)``. Returns the folder."""
        ds = cls(split="train", num_samples=num_samples, seed=seed, colour_cue=colour_cue)
        images = {p: ds.part_images(p) for p in DEFAULT_SIZES}
        labels = {p: ds._classes[p] for p in ("train", "test")}
        return write_stl10_binary(root, images, labels, folds=ds.folds, class_names=STL10_CLASSES)

    def __repr__(self) -> str:
        return (f"SyntheticSTL10(split={self.split!r}, fold={self.fold}, n={len(self)}, keys={self.keys}, "
                f"augment={self.augment})")
