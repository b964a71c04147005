"""STL-10 (Coates, Lee and Ng, AISTATS 2011) from the official binary files, read through memory maps.

Layout expected under ``root`` (as extracted from ``stl10_binary.tar.gz``; ``root`` may also be the
``stl10_binary`` folder itself)::

    stl10_binary/train_X.bin      5,000 images      train_y.bin   5,000 labels
    stl10_binary/test_X.bin       8,000 images      test_y.bin    8,000 labels
    stl10_binary/unlabeled_X.bin  100,000 images    (no labels)
    stl10_binary/fold_indices.txt 10 lines, each 1,000 space-separated 0-based indices into train
    stl10_binary/class_names.txt  10 lines: airplane, bird, car, ... (optional here)

Each image is 27,648 bytes: uint8, 3 x 96 x 96, one channel after the other, each channel in column-major
order (the files were written from MATLAB); read as ``(N, 3, 96, 96)`` the axes are (image, channel, column,
row), so ``(0, 3, 2, 1)`` gives ``N x 96 x 96 x 3`` RGB. Labels are uint8 1..10 (read as 0..9).

The image files are memory-mapped, opened lazily once per process (a forked or spawned DataLoader worker maps
its own; the map is never pickled), so the 2.6 GB of ``unlabeled_X.bin`` is paged in per image, never loaded.

Splits: ``'train'`` (5,000; ``fold=k`` keeps the 1,000 images of line ``k`` of ``fold_indices.txt``, the
predefined training folds), ``'test'`` (8,000), ``'unlabeled'`` (100,000, no labels), ``'train+unlabeled'``
(the train images, fold applied, then the unlabeled ones).

Samples (see :class:`~densekd.data.views.ImageViews`): the views named by ``keys`` (``image``, ``L``, ``ab``),
``index`` (the position in the dataset, the row of a CRD memory bank) and, for the labelled splits
``train`` / ``test`` only, ``target`` (0..9). ``targets`` is the label list of a labelled split and ``None``
otherwise (``CRDSampleDataset(mode='exact', sampling='any')`` needs none); ``labels`` holds every sample's
label with -1 for unlabelled images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.data.views import LAB_MEAN, LAB_STD, ImageViews
from densekd.registry import DATASETS

STL10_CLASSES: tuple[str, ...] = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
                                  "truck")
IMAGE_SHAPE = (3, 96, 96)
IMAGE_BYTES = 3 * 96 * 96  # 27,648
SPLITS = ("train", "test", "unlabeled", "train+unlabeled")
NUM_FOLDS = 10
URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
LAYOUT = ("ROOT/stl10_binary/{train,test}_X.bin (uint8 3 x 96 x 96 images, column-major per channel), "
          "{train,test}_y.bin (uint8 labels 1..10), unlabeled_X.bin, fold_indices.txt, class_names.txt")
HOW_TO_GET = (f"download {URL} (about 2.6 GB) and extract it under ROOT (tar -xzf stl10_binary.tar.gz -C ROOT), "
              f"or pass --data-root PATH; nothing is downloaded automatically; for a run without data use "
              f"--synthetic")


def _parts(split: str) -> tuple[str, ...]:
    """The files' prefixes a split reads, in order."""
    return ("train", "unlabeled") if split == "train+unlabeled" else (split,)


def stl10_folder(root: str | os.PathLike) -> Path:
    """``root/stl10_binary`` when it exists, else ``root`` itself (which may be that folder)."""
    folder = Path(os.path.expanduser(str(root)))
    return folder / "stl10_binary" if (folder / "stl10_binary").is_dir() else folder


def count_images(path: Path) -> int:
    """Images in an ``*_X.bin`` file, from its size; a size that is not a whole number of images is an error."""
    size = path.stat().st_size
    if size == 0 or size % IMAGE_BYTES:
        raise ValueError(f"STL-10 image file {path} has {size} bytes, not a whole (non-zero) number of "
                         f"{IMAGE_BYTES}-byte images (3 x 96 x 96 uint8): the file is truncated or not an STL-10 "
                         f"file; extract {URL.rsplit('/', 1)[-1]} again")
    return size // IMAGE_BYTES


def read_labels(path: Path, n_images: int) -> np.ndarray:
    """``*_y.bin``: one uint8 label 1..10 per image -> int64 0..9; count and range are checked."""
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) != n_images:
        raise ValueError(f"STL-10 label file {path} has {len(raw)} labels but its image file holds {n_images} "
                         f"images: the two must match; extract {URL.rsplit('/', 1)[-1]} again")
    bad = np.flatnonzero((raw < 1) | (raw > 10))
    if len(bad):
        raise ValueError(f"STL-10 label file {path}: label {raw[bad[0]]} of image {bad[0]} is outside 1..10 "
                         f"({len(bad)} such labels); is it an STL-10 *_y.bin file?")
    return raw.astype(np.int64) - 1


def read_folds(path: Path, n_train: int) -> list[np.ndarray]:
    """``fold_indices.txt``: 10 lines of space-separated 0-based indices into train -> 10 int64 arrays."""
    if not path.is_file():
        raise FileNotFoundError(f"STL-10 fold file not found: {path} (needed for fold=...). Expected layout: "
                                f"{LAYOUT}; {HOW_TO_GET}")
    folds = []
    with open(path) as fh:
        lines = [line for line in fh.read().splitlines() if line.strip()]
    if len(lines) != NUM_FOLDS:
        raise ValueError(f"STL-10 fold file {path} has {len(lines)} non-empty lines; expected {NUM_FOLDS} (one "
                         f"fold of 0-based train indices per line)")
    for k, line in enumerate(lines):
        try:
            idx = np.array([int(t) for t in line.split()], dtype=np.int64)
        except ValueError:
            raise ValueError(f"{path}:{k + 1}: expected space-separated integer indices, got "
                             f"{line.strip()[:60]!r}") from None
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_train:
            lo, hi = (idx.min(), idx.max()) if idx.size else (None, None)
            raise ValueError(f"{path}:{k + 1}: fold indices must be 0-based positions in 0..{n_train - 1} of "
                             f"train_X.bin; got {idx.size} indices in {lo}..{hi}")
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{path}:{k + 1}: fold {k} repeats indices")
        folds.append(idx)
    return folds


def read_class_names(path: Path) -> list[str] | None:
    """``class_names.txt`` (one name per line), or None when the file is absent."""
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) != len(STL10_CLASSES):
        raise ValueError(f"STL-10 class-name file {path} has {len(names)} names; expected {len(STL10_CLASSES)}")
    return names


def decode_images(raw: np.ndarray) -> np.ndarray:
    """``(N, 3, 96, 96)`` as stored (channel, column, row) -> ``N x 96 x 96 x 3`` RGB."""
    return raw.transpose(0, 3, 2, 1)


def encode_images(images: np.ndarray) -> bytes:
    """``N x 96 x 96 x 3`` uint8 RGB -> the bytes of an ``*_X.bin`` file."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (96, 96, 3) or images.dtype != np.uint8:
        raise ValueError(f"STL-10 images must be N x 96 x 96 x 3 uint8; got {images.shape} {images.dtype}")
    return np.ascontiguousarray(images.transpose(0, 3, 2, 1)).tobytes()


def check_split_args(split: str, fold) -> int | None:
    if split not in SPLITS:
        raise ValueError(f"STL-10 split must be one of {SPLITS}; got {split!r}")
    if fold is None:
        return None
    if split not in ("train", "train+unlabeled"):
        raise ValueError(f"fold={fold!r} selects training images; split {split!r} has no folds (use split='train')")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < NUM_FOLDS:
        raise ValueError(f"STL-10 fold must be an int in 0..{NUM_FOLDS - 1} or None (all 5,000 train images); "
                         f"got {fold!r}")
    return int(fold)


class _STL10Base(Dataset):
    """What the real and the synthetic STL-10 share: split logic, views, samples."""

    num_classes = len(STL10_CLASSES)
    class_names = list(STL10_CLASSES)
    palette = None
    load_keys = ("image", "target")  # what load(index) returns, in order (target -1: unlabelled)

    def _setup(self, split: str, fold, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean,
               std, lab_mean, lab_std) -> None:
        self.split = split
        self.fold = check_split_args(split, fold)
        self.augment = (split != "test") if augment is None else bool(augment)
        self.labelled = split in ("train", "test")
        self.transform = ImageViews(keys, size, self.augment, crop, crop_scale, crop_ratio, padding, flip, mean,
                                    std, lab_mean, lab_std)
        self.keys = self.transform.keys

    def _set_parts(self, sizes: dict[str, int], labels: dict[str, np.ndarray], folds: list | None) -> None:
        """``sizes[part]`` images per file part, ``labels[part]`` 0..9 (labelled parts); fold applied to train."""
        self._part_names, self._part_index = [], []
        for part in _parts(self.split):
            idx = np.arange(sizes[part], dtype=np.int64)
            if part == "train" and self.fold is not None:
                idx = np.asarray(folds[self.fold], dtype=np.int64)
            self._part_names.append(part)
            self._part_index.append(idx)
        self._offsets = np.cumsum([0] + [len(i) for i in self._part_index])
        self.labels = np.concatenate([labels[p][i] if p in labels else np.full(len(i), -1, np.int64)
                                      for p, i in zip(self._part_names, self._part_index)])
        self.targets = self.labels.tolist() if self.labelled else None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[str, int]:
        """(file part, image position in that file) of sample ``index``."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"{type(self).__name__} {self.split} index {index} out of range for {n} images")
        index = int(index) % n
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return self._part_names[k], int(self._part_index[k][index - self._offsets[k]])

    def read_image(self, part: str, j: int) -> np.ndarray:
        raise NotImplementedError

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Raw sample ``index``: (96 x 96 x 3 uint8 RGB, label 0..9 or -1 for an unlabelled image)."""
        part, j = self.locate(index)
        return self.read_image(part, j), int(self.labels[int(index) % len(self)])

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        sample = self.transform(image)
        if self.labelled:
            sample["target"] = label
        sample["index"] = int(index)
        return sample


@DATASETS.register()
class STL10(_STL10Base):
    """STL-10 read from the official binary files (module docstring for layout, splits and samples).

    Args:
        root: folder containing ``stl10_binary/`` (or that folder itself).
        split: ``'train'``, ``'test'``, ``'unlabeled'`` or ``'train+unlabeled'``.
        fold: 0..9 keeps that predefined training fold (1,000 images of ``fold_indices.txt``); None: all train.
        keys: the views of each sample, out of ``('image', 'L', 'ab')``.
        augment: default on for every split but ``test``.
        size, crop, crop_scale, crop_ratio, padding, flip, mean, std, lab_mean, lab_std: see
            :class:`~densekd.data.views.ImageViews` (defaults: 96 x 96, zero-pad by 12 and random 96 crop +
            flip, ImageNet RGB statistics, the Lab statistics of CMC / CRD; ``configs/_base_/datasets/
            stl10_lab.py`` uses a random resized crop to 64 x 64 over 30-100% of the area instead).

    ``class_names``: ``class_names.txt`` when present, else :data:`STL10_CLASSES`.
    """

    synthetic = "SyntheticSTL10"

    def __init__(self, root: str = "data/stl10", split: str = "train", fold: int | None = None,
                 keys: Sequence[str] = ("image",), augment: bool | None = None, size: int | Sequence[int] | None = 96,
                 crop: str = "pad", crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), padding: int = 12, flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 lab_mean: Sequence[float] = LAB_MEAN, lab_std: Sequence[float] = LAB_STD):
        if root is None:
            raise FileNotFoundError(f"STL10 needs root=PATH (use --data-root), laid out as {LAYOUT}; {HOW_TO_GET}")
        self._setup(split, fold, keys, augment, size, crop, crop_scale, crop_ratio, padding, flip, mean, std,
                    lab_mean, lab_std)
        self.root = str(root)
        self.folder = stl10_folder(root)
        sizes, labels, self.paths = {}, {}, {}
        for part in _parts(split):
            x = self.folder / f"{part}_X.bin"
            if not x.is_file():
                what = "folder" if not self.folder.is_dir() else f"{part} image file"
                raise FileNotFoundError(f"STL-10 {what} not found: {x} does not exist. Expected layout: {LAYOUT}; "
                                        f"{HOW_TO_GET}")
            sizes[part] = count_images(x)
            self.paths[part] = [str(x)]
            if part != "unlabeled":
                y = self.folder / f"{part}_y.bin"
                if not y.is_file():
                    raise FileNotFoundError(f"STL-10 {part} label file not found: {y} (beside {x.name}). Expected "
                                            f"layout: {LAYOUT}; {HOW_TO_GET}")
                labels[part] = read_labels(y, sizes[part])
                self.paths[part].append(str(y))
        folds = read_folds(self.folder / "fold_indices.txt", sizes["train"]) if self.fold is not None else None
        self._set_parts(sizes, labels, folds)
        self._sizes = sizes
        names = read_class_names(self.folder / "class_names.txt")
        if names is not None:
            self.class_names = names
        self._maps: dict[str, np.memmap] = {}
        self._maps_pid = None

    def _map(self, part: str) -> np.memmap:
        """This process's read-only memory map of ``{part}_X.bin`` (a forked worker maps the file anew)."""
        pid = os.getpid()
        if self._maps_pid != pid:
            self._maps, self._maps_pid = {}, pid
        if part not in self._maps:
            self._maps[part] = np.memmap(self.paths[part][0], dtype=np.uint8, mode="r",
                                         shape=(self._sizes[part], *IMAGE_SHAPE))
        return self._maps[part]

    def __getstate__(self):  # a spawned worker gets the paths, never a pickled copy of the mapped images
        state = self.__dict__.copy()
        state["_maps"], state["_maps_pid"] = {}, None
        return state

    def read_image(self, part: str, j: int) -> np.ndarray:
        return np.ascontiguousarray(self._map(part)[j].transpose(2, 1, 0))

    def sample_files(self, index: int) -> list[str]:
        return list(self.paths[self.locate(index)[0]])

    def check_sample(self, index: int) -> None:
        """Image ``index`` can be read from its file (labels are checked when the dataset is built)."""
        part, j = self.locate(index)
        self.read_image(part, j)

    def __repr__(self) -> str:
        return (f"STL10(root={self.root!r}, split={self.split!r}, fold={self.fold}, n={len(self)}, "
                f"keys={self.keys}, augment={self.augment})")


def write_stl10_binary(root: str | os.PathLike, images: dict[str, np.ndarray], labels: dict[str, Sequence[int]],
                       folds: Sequence[Sequence[int]] | None = None,
                       class_names: Sequence[str] | None = STL10_CLASSES) -> Path:
    """Write arrays in the official ``stl10_binary`` format (for tests, tools and the synthetic tree).

    ``images[part]``: N x 96 x 96 x 3 uint8 for parts ``train``, ``test``, ``unlabeled``; ``labels[part]``: N
    labels 0..9 for ``train`` / ``test`` (written as 1..10); ``folds``: 10 lists of 0-based train indices
    (``fold_indices.txt``); ``class_names``: written to ``class_names.txt`` unless None. Returns the folder.
    """
    folder = Path(root) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for part, imgs in images.items():
        if part not in ("train", "test", "unlabeled"):
            raise ValueError(f"STL-10 parts are train, test and unlabeled; got {part!r}")
        (folder / f"{part}_X.bin").write_bytes(encode_images(imgs))
        if part != "unlabeled":
            y = np.asarray(labels[part], dtype=np.int64)
            if len(y) != len(imgs) or (len(y) and (y.min() < 0 or y.max() > 9)):
                raise ValueError(f"labels[{part!r}] must be {len(imgs)} labels in 0..9")
            (folder / f"{part}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
    if folds is not None:
        (folder / "fold_indices.txt").write_text("".join(" ".join(str(int(i)) for i in f) + " \n" for f in folds))
    if class_names is not None:
        (folder / "class_names.txt").write_text("".join(f"{c}\n" for c in class_names))
    return folder
