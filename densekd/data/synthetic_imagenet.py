"""A synthetic stand-in for ImageNet in its format, and the writer of ImageNet's folder trees.

:class:`SyntheticImageNet` takes :class:`~densekd.data.imagenet.ImageNet`'s arguments (``root`` and the tree's
options accepted and ignored) plus ``num_samples``, ``num_classes``, ``image_size`` and ``seed``: class-dependent
object pictures (:mod:`densekd.data.synthetic_objects`, about 2 % greyscale), encoded as JPEG in memory and
decoded by the same code as the real files (every ``decode`` mode works), 1000 classes with synthetic wnids
(``n99000000`` ...), balanced labels, training labels sorted by class as the real listing.

:meth:`SyntheticImageNet.write_tree` writes a small ImageNet tree of JPEG files -- a handful of classes,
``train/<wnid>/<wnid>_<i>.JPEG`` and either layout of ``val/`` (class folders, or the official flat folder with
Kaggle's ``LOC_val_solution.csv`` and the devkit's ``meta.mat`` + ground truth, in ID orders that differ from
the sorted one) -- including a greyscale JPEG, a CMYK JPEG and a PNG named ``.JPEG`` as the real release has.
It returns a manifest of what it wrote (class order, each split's files with their wnids in the loader's order),
which the tests compare with what :class:`~densekd.data.imagenet.ImageNet` reads back.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from densekd.data.imagenet import (DEVKIT, GROUND_TRUTH, NUM_CLASSES, SYNSET_MAPPING, SYNTHETIC_MARKER, VAL_SOLUTION,
                                   _ImageNetBase)
from densekd.data.synthetic_objects import ObjectClasses, balanced_labels
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.registry import DATASETS

DEFAULT_SIZES = {"train": 2000, "val": 500}
GREY_FRACTION = 0.02
#: synthetic WordNet-style ids (no real wnid starts with n99), in sorted order
SYNTHETIC_WNIDS = tuple(f"n99{k:06d}" for k in range(NUM_CLASSES))
SYNTHETIC_NAMES = tuple(f"synthetic class {k}" for k in range(NUM_CLASSES))


def encode_jpeg(image: np.ndarray, quality: int = 90, mode: str = "RGB") -> bytes:
    """``H x W x 3`` uint8 -> JPEG bytes; ``mode='L'`` writes a greyscale JPEG, ``'CMYK'`` a CMYK one, ``'PNG'`` a
    PNG (ImageNet has one named ``.JPEG``)."""
    from PIL import Image

    pic = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    if mode == "PNG":
        pic.save(buf, format="PNG")
    else:
        pic.convert(mode).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@DATASETS.register()
class SyntheticImageNet(_ImageNetBase):
    """Stand-in for :class:`~densekd.data.imagenet.ImageNet` (module docstring).

    Extra args: ``num_samples`` (default 2,000 train / 500 val), ``num_classes`` (default 1000; labels lie in
    ``0 .. num_classes - 1`` of the 1000 synthetic classes), ``image_size`` (side of the square pictures, 96),
    ``quality`` (JPEG quality), ``seed``. The tree options (``allow_partial``, ``index_cache``, ``val_labels``,
    ``devkit``) are accepted and ignored.
    """

    class_names = list(SYNTHETIC_NAMES)
    wnids = list(SYNTHETIC_WNIDS)

    def __init__(self, root: str | None = None, split: str = "train", size: int = 224, resize: int | None = None,
                 augment: bool | None = None, crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, decode: str = "pil",
                 allow_partial: bool = False, index_cache: str | bool | None = None, val_labels: str | None = None,
                 devkit: str | None = None, num_samples: int | None = None, num_classes: int = NUM_CLASSES,
                 image_size: int = 96, quality: int = 90, seed: int = 0):
        self._setup(split, size, resize, augment, crop_scale, crop_ratio, flip, mean, std, decode)
        n = DEFAULT_SIZES[split] if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples!r}")
        if not 1 <= int(num_classes) <= NUM_CLASSES:
            raise ValueError(f"num_classes must be in 1..{NUM_CLASSES}; got {num_classes!r}")
        self.root, self.seed, self.image_size, self.quality = root, int(seed), int(image_size), int(quality)
        self.objects = ObjectClasses(NUM_CLASSES, self.seed + 1)
        labels = balanced_labels(n, int(num_classes), self.seed, f"imagenet/{split}")
        if split == "train":
            labels = np.sort(labels, kind="stable")
        self.targets = labels.astype(np.int64)

    def picture(self, index: int) -> np.ndarray:
        """The uint8 picture of sample ``index`` before JPEG encoding."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"SyntheticImageNet {self.split} index {index} out of range for {n} images")
        index = int(index) % n
        return self.objects.picture(int(self.targets[index]), f"imagenet/{self.split}", index, self.image_size,
                                    GREY_FRACTION)

    def read_bytes(self, index: int) -> bytes:
        return encode_jpeg(self.picture(index), self.quality)

    @staticmethod
    def write_tree(root: str | os.PathLike, classes: int = 5, train_per_class: int = 3, val_per_class: int = 2,
                   val_layout: str = "flat", image_size: tuple[int, int] = (48, 64), seed: int = 0,
                   quality: int = 95, synset_mapping: bool = True, devkit: bool = True, solution_csv: bool = True,
                   odd_files: bool = True, mark: bool = True, keep_pictures: bool = True) -> dict:
        """Write an ImageNet tree of ``classes`` classes under ``root`` (see the module docstring).

        Args:
            val_layout: ``'flat'`` (``val/ILSVRC2012_val_<i>.JPEG``, labelled by ``LOC_val_solution.csv`` and / or
                the devkit) or ``'folders'`` (``val/<wnid>/...``).
            image_size: (height, width) of the pictures.
            synset_mapping, devkit, solution_csv: write ``LOC_synset_mapping.txt``,
                ``ILSVRC2012_devkit_t12/data/{meta.mat, ground truth}`` (its leaf IDs in a shuffled order, plus two
                non-leaf synsets), ``LOC_val_solution.csv`` (rows shuffled).
            odd_files: the first training image of classes 0 / 1 / 2 (sorted order) is a greyscale JPEG / a CMYK
                JPEG / a PNG named ``.JPEG``.
            mark: write ``DENSEKD_SYNTHETIC_TREE`` (the loader then accepts the partial tree).
            keep_pictures: return the pictures (``False`` for large trees: only the file lists).

        Returns ``{'wnids': sorted wnids, 'train': [(path relative to root, wnid)], 'val': [...], 'pictures':
        {relative path: uint8 picture before encoding}}``, the splits in the loader's order.
        """
        import scipy.io

        if val_layout not in ("flat", "folders"):
            raise ValueError(f"val_layout must be 'flat' or 'folders'; got {val_layout!r}")
        root = Path(root)
        rng = np.random.default_rng(seed)
        numbers = rng.choice(np.arange(1_000_000, 10_000_000), size=classes, replace=False)
        made = [f"n0{n:07d}" for n in numbers]  # creation order: not sorted
        wnids = sorted(made)
        objects = ObjectClasses(classes, seed + 1)
        h, w = image_size
        pictures: dict[str, np.ndarray] = {}

        def draw(k: int, stream: str, i: int) -> np.ndarray:
            big = objects.picture(k, stream, i, max(h, w))
            top, left = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
            return np.ascontiguousarray(big[top:top + h, left:left + w])

        def save(rel: str, image: np.ndarray, mode: str = "RGB") -> None:
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_jpeg(image, quality, mode))
            if mode == "L":  # what a decoder returns for a greyscale file
                image = np.repeat((image.astype(np.float64) @ [0.299, 0.587, 0.114]).round().clip(0, 255)
                                  .astype(np.uint8)[..., None], 3, axis=2)
            if keep_pictures:
                pictures[rel] = image

        train = []
        for wnid in made:
            k = wnids.index(wnid)
            numbers_in_class = [1, 2, 10, 11, 3][:train_per_class] + list(range(20, 20 + max(0, train_per_class - 5)))
            for j, num in enumerate(numbers_in_class):
                mode = {0: "L", 1: "CMYK", 2: "PNG"}.get(k, "RGB") if (odd_files and j == 0) else "RGB"
                rel = f"train/{wnid}/{wnid}_{num}.JPEG"
                save(rel, draw(k, "train", k * 100 + num), mode)
                train.append((rel, wnid))
        train.sort(key=lambda e: (wnids.index(e[1]), e[0].rsplit("/", 1)[1]))

        n_val = classes * val_per_class
        val_labels = [wnids[k] for k in rng.permutation(np.arange(n_val) % classes)]
        val = []
        for i, wnid in enumerate(val_labels, 1):
            name = f"ILSVRC2012_val_{i:08d}.JPEG"
            rel = f"val/{name}" if val_layout == "flat" else f"val/{wnid}/{name}"
            save(rel, draw(wnids.index(wnid), "val", i))
            val.append((rel, wnid))
        if val_layout == "folders":
            val.sort(key=lambda e: (wnids.index(e[1]), e[0].rsplit("/", 1)[1]))

        if synset_mapping:
            (root / SYNSET_MAPPING).write_text("".join(f"{wn} synthetic class {made.index(wn)}, thing\n"
                                                       for wn in wnids))
        if devkit:
            data = root / DEVKIT / "data"
            data.mkdir(parents=True, exist_ok=True)
            ids = {wn: i + 1 for i, wn in enumerate(made)}  # leaf IDs in creation order, not sorted order
            fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O"),
                      ("children", "O"), ("wordnet_height", "O"), ("num_train_images", "O")]
            synsets = np.zeros((classes + 2, 1), dtype=fields)
            for wn in made:
                synsets[ids[wn] - 1, 0] = (ids[wn], wn, f"synthetic class {made.index(wn)}, thing", "a synthetic class",
                                           0, np.zeros((1, 0)), 0, train_per_class)
            for j in range(2):  # non-leaf synsets after the leaves, as in the real devkit
                synsets[classes + j, 0] = (classes + j + 1, f"n0{j:07d}", f"group {j}", "an inner synset",
                                           classes, np.arange(1, classes + 1), 1 + j, 0)
            scipy.io.savemat(str(data / "meta.mat"), {"synsets": synsets})
            if val_layout == "flat":
                (data / GROUND_TRUTH).write_text("".join(f"{ids[wn]}\n" for wn in val_labels))
        if solution_csv and val_layout == "flat":
            order = rng.permutation(len(val_labels))
            with open(root / VAL_SOLUTION, "w", newline="") as fh:
                out = csv.writer(fh)
                out.writerow(["ImageId", "PredictionString"])
                for i in order:
                    wn = val_labels[i]
                    out.writerow([f"ILSVRC2012_val_{i + 1:08d}", f"{wn} 1 2 {w - 1} {h - 1} {wn} 3 4 20 21"])
        if mark:
            (root / SYNTHETIC_MARKER).write_text("A synthetic ImageNet tree written by densekd "
                                                 "(SyntheticImageNet.write_tree): the loader accepts it as partial.\n")
        return {"wnids": wnids, "train": train, "val": val, "pictures": pictures}

    def __repr__(self) -> str:
        return (f"SyntheticImageNet(split={self.split!r}, n={len(self)}, size={self.size}, augment={self.augment}, "
                f"decode={self.decode!r})")
