"""TinyImageNet (the Stanford CS231N Tiny ImageNet Challenge: 200 ImageNet classes, 64 x 64 JPEGs) from the
official folder tree.

Layout expected under ``root`` (as extracted from ``tiny-imagenet-200.zip``; ``root`` may also be the
``tiny-imagenet-200`` folder itself)::

    tiny-imagenet-200/wnids.txt                       200 WordNet ids, one per line: the class order
    tiny-imagenet-200/words.txt                       'wnid<TAB>names' for (many more) wnids; optional here
    tiny-imagenet-200/train/<wnid>/images/*.JPEG      500 training images per class
    tiny-imagenet-200/val/images/*.JPEG               10,000 validation images
    tiny-imagenet-200/val/val_annotations.txt         'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1' per image

Class ``k`` is line ``k`` of ``wnids.txt``. Images are decoded with Pillow and converted to RGB (some of the
JPEGs are greyscale: their grey level is repeated in the three channels). The test split has no public labels
and is not read. Splits: ``'train'`` (100,000: classes in ``wnids.txt`` order, files sorted by name within a
class, numbers compared as numbers: ``n01443537_2.JPEG`` before ``n01443537_10.JPEG``) and ``'val'`` (10,000,
in the order of ``val_annotations.txt``).

Samples (see :class:`~densekd.data.views.ImageViews`): the views named by ``keys`` (``image``, ``L``, ``ab``),
``target`` (0..199) and ``index``. CRD's transfer experiment (Table 4: a CIFAR-100-trained network probed
on other data) resizes the images to 32 x 32 and normalises them with CIFAR-100's statistics
(``configs/_base_/datasets/tinyimagenet.py``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.data.views import LAB_MEAN, LAB_STD, ImageViews
from densekd.registry import DATASETS

SPLITS = ("train", "val")
NUM_CLASSES = 200
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
LAYOUT = ("ROOT/tiny-imagenet-200/{wnids.txt, words.txt (optional), train/<wnid>/images/*.JPEG, val/images/*.JPEG, "
          "val/val_annotations.txt (file, wnid, x0, y0, x1, y1; tab-separated)}")
HOW_TO_GET = (f"download {URL} (about 240 MB) and unzip it under ROOT (unzip tiny-imagenet-200.zip -d ROOT), or pass "
              f"--data-root PATH; nothing is downloaded automatically; for a run without data use --synthetic")
IMAGE_EXTS = (".jpeg", ".jpg")


def tinyimagenet_folder(root: str | os.PathLike) -> Path:
    folder = Path(os.path.expanduser(str(root)))
    return folder / "tiny-imagenet-200" if (folder / "tiny-imagenet-200").is_dir() else folder


def read_wnids(path: Path) -> list[str]:
    """``wnids.txt``: one WordNet id per line (blank lines skipped), unique."""
    if not path.is_file():
        what = "folder" if not path.parent.is_dir() else "class list"
        raise FileNotFoundError(f"TinyImageNet {what} not found: {path} does not exist. Expected layout: {LAYOUT}; "
                                f"{HOW_TO_GET}")
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids:
        raise ValueError(f"TinyImageNet class list {path} is empty; it must hold the {NUM_CLASSES} wnids, one a line")
    seen = set()
    for k, w in enumerate(wnids):
        if w in seen or len(w.split()) != 1:
            raise ValueError(f"{path}: entry {k + 1} {w!r} is repeated or not a single wnid")
        seen.add(w)
    return wnids


def read_words(path: Path, wnids: Sequence[str]) -> dict[str, str]:
    """``words.txt`` lines ``wnid<TAB>names`` for the given wnids (absent file: {})."""
    if not path.is_file():
        return {}
    wanted, words = set(wnids), {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            wnid, _, names = line.rstrip("\n").partition("\t")
            if wnid in wanted:
                words[wnid] = names.strip()
    return words


def read_val_annotations(path: Path, wnids: Sequence[str]) -> list[tuple[str, int]]:
    """``val_annotations.txt`` -> [(file name, class index)], in file order; every line is checked."""
    if not path.is_file():
        raise FileNotFoundError(f"TinyImageNet validation annotations not found: {path}. Expected layout: {LAYOUT}; "
                                f"{HOW_TO_GET}")
    index = {w: k for k, w in enumerate(wnids)}
    entries = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.split("\t")
            if len(parts) != 6:
                raise ValueError(f"{path}:{lineno}: expected 6 tab-separated fields (file, wnid, x0, y0, x1, y1), "
                                 f"got {len(parts)}: {text[:80]!r}")
            name, wnid = parts[0], parts[1]
            if wnid not in index:
                raise ValueError(f"{path}:{lineno}: wnid {wnid!r} of {name} is not in wnids.txt")
            try:
                [int(v) for v in parts[2:]]
            except ValueError:
                raise ValueError(f"{path}:{lineno}: the box {parts[2:]} is not 4 integers") from None
            entries.append((name, index[wnid]))
    if not entries:
        raise ValueError(f"{path} has no annotations. Expected layout: {LAYOUT}")
    return entries


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``n01443537_2.JPEG`` before ``n01443537_10.JPEG``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_image(path: str) -> np.ndarray:
    """A JPEG as ``H x W x 3`` uint8 RGB (greyscale, palette or CMYK images converted)."""
    from PIL import Image

    with Image.open(path) as img:
        return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy (torch.from_numpy needs one)


class _TinyImageNetBase(Dataset):
    num_classes = NUM_CLASSES
    palette = None
    load_keys = ("image", "target")  # what load(index) returns, in order

    def _setup(self, split, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean, std, lab_mean,
               lab_std) -> None:
        if split not in SPLITS:
            raise ValueError(f"TinyImageNet split must be one of {SPLITS} (the test split has no public labels); "
                             f"got {split!r}")
        self.split = split
        self.augment = (split == "train") if augment is None else bool(augment)
        self.transform = ImageViews(keys, size, self.augment, crop, crop_scale, crop_ratio, padding, flip, mean,
                                    std, lab_mean, lab_std)
        self.keys = self.transform.keys

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        sample = self.transform(image)
        sample["target"] = int(label)
        sample["index"] = int(index)
        return sample


@DATASETS.register()
class TinyImageNet(_TinyImageNetBase):
    """TinyImageNet from the official folder tree (module docstring for layout, splits and samples).

    Args:
        root: folder containing ``tiny-imagenet-200/`` (or that folder itself).
        split: ``'train'`` or ``'val'``.
        keys: the views of each sample, out of ``('image', 'L', 'ab')``.
        augment: default on for ``train``.
        size, crop, crop_scale, crop_ratio, padding, flip, mean, std, lab_mean, lab_std: see
            :class:`~densekd.data.views.ImageViews` (defaults: 64 x 64, zero-pad by 8 and random 64 crop + flip,
            ImageNet statistics).

    ``class_names``: the first name of each class in ``words.txt`` when present, else the wnids; ``wnids``: the
    class order. Every listed file is checked to exist at construction.
    """

    synthetic = "SyntheticTinyImageNet"

    def __init__(self, root: str = "data/tinyimagenet", split: str = "train", keys: Sequence[str] = ("image",),
                 augment: bool | None = None, size: int | Sequence[int] | None = 64, crop: str = "pad",
                 crop_scale: Sequence[float] = (0.08, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 padding: int = 8, flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, lab_mean: Sequence[float] = LAB_MEAN,
                 lab_std: Sequence[float] = LAB_STD):
        if root is None:
            raise FileNotFoundError(f"TinyImageNet needs root=PATH (use --data-root), laid out as {LAYOUT}; "
                                    f"{HOW_TO_GET}")
        self._setup(split, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean, std, lab_mean,
                    lab_std)
        self.root = str(root)
        self.folder = tinyimagenet_folder(root)
        self.wnids = read_wnids(self.folder / "wnids.txt")
        self.num_classes = len(self.wnids)
        self.words = read_words(self.folder / "words.txt", self.wnids)
        self.class_names = [self.words[w].split(",")[0].strip() if self.words.get(w) else w for w in self.wnids]
        if split == "train":
            self.files, self.targets = self._list_train()
        else:
            self.files, self.targets = self._list_val()

    def _list_train(self) -> tuple[list[str], list[int]]:
        files, targets = [], []
        for k, wnid in enumerate(self.wnids):
            folder = self.folder / "train" / wnid / "images"
            if not folder.is_dir():
                raise FileNotFoundError(f"TinyImageNet training folder of class {k} ({wnid}) not found: {folder}. "
                                        f"Expected layout: {LAYOUT}; {HOW_TO_GET}")
            names = sorted((e.name for e in os.scandir(folder) if e.is_file() and
                            os.path.splitext(e.name)[1].lower() in IMAGE_EXTS), key=natural_key)
            if not names:
                raise FileNotFoundError(f"TinyImageNet training folder {folder} holds no .JPEG images (class {k}, "
                                        f"{wnid}); extract {URL.rsplit('/', 1)[-1]} again")
            files += [str(folder / n) for n in names]
            targets += [k] * len(names)
        return files, targets

    def _list_val(self) -> tuple[list[str], list[int]]:
        ann = self.folder / "val" / "val_annotations.txt"
        entries = read_val_annotations(ann, self.wnids)
        folder = self.folder / "val" / "images"
        present = {e.name for e in os.scandir(folder)} if folder.is_dir() else set()
        missing = [n for n, _ in entries if n not in present]
        if missing:
            raise FileNotFoundError(f"TinyImageNet validation image {folder / missing[0]} listed in {ann} not found "
                                    f"({len(missing)} of {len(entries)} missing). Expected layout: {LAYOUT}; "
                                    f"{HOW_TO_GET}")
        return [str(folder / n) for n, _ in entries], [k for _, k in entries]

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Raw sample ``index``: (H x W x 3 uint8 RGB as decoded, class index)."""
        return read_image(self.files[index]), int(self.targets[index])

    def sample_files(self, index: int) -> list[str]:
        return [self.files[index]]

    def check_sample(self, index: int) -> None:
        read_image(self.files[index])

    def __repr__(self) -> str:
        return (f"TinyImageNet(root={self.root!r}, split={self.split!r}, n={len(self)}, keys={self.keys}, "
                f"augment={self.augment})")


def write_tinyimagenet_tree(root: str | os.PathLike, wnids: Sequence[str], train: dict[str, Sequence[np.ndarray]],
                            val: Sequence[tuple[np.ndarray, str]], words: dict[str, str] | None = None,
                            quality: int = 95) -> Path:
    """Write images in the official ``tiny-imagenet-200`` layout (for tests, tools and the synthetic tree).

    ``train[wnid]``: that class's images (H x W x 3 uint8; an image with R = G = B is written as a greyscale
    JPEG, as some of the real ones are), saved as ``train/<wnid>/images/<wnid>_<i>.JPEG`` with a
    ``<wnid>_boxes.txt``; ``val``: (image, wnid) pairs saved as ``val/images/val_<i>.JPEG`` and listed in
    ``val/val_annotations.txt``; ``words``: wnid -> names for ``words.txt``. Returns the folder.
    """
    from PIL import Image

    folder = Path(root) / "tiny-imagenet-200"

    def save(path: Path, img: np.ndarray) -> tuple[int, int]:
        img = np.asarray(img, dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        grey = img.ndim == 2 or (np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]))
        pic = Image.fromarray(img if img.ndim == 2 else img[..., 0]) if grey else Image.fromarray(img, "RGB")
        pic.save(path, format="JPEG", quality=quality)
        return img.shape[1], img.shape[0]

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    if words is not None:
        (folder / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in words.items()))
    for wnid, images in train.items():
        boxes = []
        for i, img in enumerate(images):
            name = f"{wnid}_{i}.JPEG"
            w, h = save(folder / "train" / wnid / "images" / name, img)
            boxes.append(f"{name}\t0\t0\t{w - 1}\t{h - 1}\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    for i, (img, wnid) in enumerate(val):
        name = f"val_{i}.JPEG"
        w, h = save(folder / "val" / "images" / name, img)
        lines.append(f"{name}\t{wnid}\t0\t0\t{w - 1}\t{h - 1}\n")
    (folder / "val").mkdir(parents=True, exist_ok=True)
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder
