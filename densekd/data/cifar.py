"""CIFAR-100 from the official ``cifar-100-python`` pickles, and its synthetic stand-in.

Layout expected under ``root``::

    cifar-100-python/train   cifar-100-python/test   cifar-100-python/meta

(as extracted from ``cifar-100-python.tar.gz``; ``root`` may also point at the
``cifar-100-python`` folder itself). Samples are dicts ``{'image': 3x32x32
float tensor, 'target': int, 'view': int}``; datasets expose ``targets``. ``'view'`` numbers the crop offset and
flip the augmentation drew (0..161; always 0 without augmentation): the finite-view protocol of
:mod:`densekd.data.finite_views` (``num_views``, ``view_item(index, view)``), which lets a teacher cache serve them.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.data.finite_views import crop_flip, crop_flip_views, draw_crop_flip
from densekd.registry import DATASETS

CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
SPLITS = ("train", "test")

# The 100 fine label names in label order, as the official ``meta`` pickle's ``fine_label_names``.
FINE_LABEL_NAMES: tuple[str, ...] = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)


def cifar_augment(image: np.ndarray, padding: int = 4) -> np.ndarray:
    """Random 32x32 crop of the zero-padded image, then a random horizontal flip (HxWxC uint8).

    Draws from NumPy's global RNG (seeded per sample by the loader): the view of
    :func:`~densekd.data.finite_views.draw_crop_flip`, rendered by :func:`~densekd.data.finite_views.crop_flip`.
    """
    return crop_flip(image, draw_crop_flip(padding), padding)


def to_normalized_tensor(image: np.ndarray, mean=CIFAR100_MEAN, std=CIFAR100_STD) -> torch.Tensor:
    """HxWxC uint8 -> CxHxW float, per-channel normalised."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


class _CIFARBase(Dataset):
    num_classes = 100
    class_names = list(FINE_LABEL_NAMES)  # metadata the task takes; a real copy's ``meta`` file overrides it
    palette = None  # no label maps to colour
    padding = 4  # of the random crop

    def __init__(self, split: str, augment: bool | None, mean, std):
        if split not in SPLITS:
            raise ValueError(f"CIFAR-100 split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.augment = (split == "train") if augment is None else augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.images: np.ndarray  # N x 32 x 32 x 3 uint8
        self.targets: list[int]

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """The raw sample before any transform: the 32 x 32 x 3 uint8 image and its fine label."""
        return np.asarray(self.images[index]), int(self.targets[index])

    @property
    def num_views(self) -> int:
        """Distinct items per sample: the 162 crop offsets x flips with augmentation, else 1."""
        return crop_flip_views(self.padding) if self.augment else 1

    def __getitem__(self, index: int) -> dict:
        return self.view_item(index, draw_crop_flip(self.padding) if self.augment else 0)

    def view_item(self, index: int, view: int) -> dict:
        """Sample ``index`` in view ``view`` (:mod:`densekd.data.finite_views`), without drawing from any RNG."""
        if not 0 <= int(view) < self.num_views:
            raise ValueError(f"{type(self).__name__}: view {view} is outside 0..{self.num_views - 1}")
        image = self.images[index]
        if self.augment:
            image = crop_flip(image, view, self.padding)
        return {"image": to_normalized_tensor(image, self.mean, self.std), "target": int(self.targets[index]),
                "view": int(view)}


@DATASETS.register()
class CIFAR100(_CIFARBase):
    """CIFAR-100 (fine labels) read from the official pickles; standard augmentation on ``train``.

    Args:
        root: folder containing ``cifar-100-python/`` (or that folder itself).
        split: ``'train'`` (50,000 images) or ``'test'`` (10,000).
        augment: random crop 32 (padding 4) + horizontal flip; default on for train only.

    ``class_names``: the ``fine_label_names`` of ``meta`` when the file is there, else the official list
    (:data:`FINE_LABEL_NAMES`).
    """

    synthetic = "SyntheticCIFAR100"

    def __init__(self, root: str = "data/cifar100", split: str = "train", augment: bool | None = None,
                 mean=CIFAR100_MEAN, std=CIFAR100_STD):
        super().__init__(split, augment, mean, std)
        folder = Path(root)
        if (folder / "cifar-100-python").is_dir():
            folder = folder / "cifar-100-python"
        path = folder / split
        if not path.is_file():
            raise FileNotFoundError(
                f"CIFAR-100 {split} file not found: {path}. "
                f"Expected layout: {Path(root) / 'cifar-100-python'}/{{train,test,meta}} (the official python "
                f"pickles). Download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
                f"extract it under {root}, or pass --data-root PATH. For a smoke run without data use --synthetic.")
        entry = read_pickle(path)
        missing = {"data", "fine_labels"} - set(entry)
        if missing:
            raise ValueError(f"{path} is not a CIFAR-100 pickle: missing keys {sorted(missing)} (it has "
                             f"{sorted(entry)[:8]}); use the files of cifar-100-python.tar.gz")
        data = np.asarray(entry["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: expected data of shape N x 3072, got {data.shape}")
        self.images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = [int(t) for t in entry["fine_labels"]]
        if len(self.targets) != len(self.images):
            raise ValueError(f"{path}: {len(self.images)} images but {len(self.targets)} fine labels; the file is "
                             f"damaged, extract cifar-100-python.tar.gz again")
        self.path = str(path)
        meta = folder / "meta"
        self.classes = None
        if meta.is_file():
            self.classes = read_pickle(meta).get("fine_label_names")
        if self.classes is not None:
            self.classes = [c.decode("latin1") if isinstance(c, bytes) else c for c in self.classes]
            if len(self.classes) != self.num_classes:
                raise ValueError(f"{meta}: fine_label_names has {len(self.classes)} names; CIFAR-100 has "
                                 f"{self.num_classes}")
            self.class_names = [str(c) for c in self.classes]


    def sample_files(self, index: int) -> list[str]:
        return [self.path]

    def check_sample(self, index: int) -> None:
        """The label of sample ``index`` is one of the 100 classes (the images are checked when loaded)."""
        t = self.targets[index]
        if not 0 <= t < self.num_classes:
            raise ValueError(f"fine label {t} of image {index} is outside 0..{self.num_classes - 1}")


def _str_keys(value):
    """Dict keys (and the label-name lists) as ``str``: pickles written by Python 2 tools, or read back with
    ``encoding='bytes'`` and written again by Python 3 ones, have ``bytes`` keys such as ``b'data'``."""
    if isinstance(value, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in value.items()}
    return value


def read_pickle(path: Path) -> dict:
    """One of the official pickles as a dict with ``str`` keys; a truncated or foreign file names the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (EOFError, pickle.UnpicklingError, ValueError, IndexError, MemoryError) as exc:
        text = str(exc)
        if isinstance(exc, EOFError) or "truncated" in text or "Ran out of input" in text:
            raise ValueError(f"{path} is truncated ({size} bytes; the pickle ends early): download "
                             f"cifar-100-python.tar.gz again and extract it (the official train file is 155 MB, "
                             f"test 31 MB)") from None
        raise ValueError(f"{path} is not a CIFAR-100 python pickle ({type(exc).__name__}: {text[:100]}): use the "
                         f"files of cifar-100-python.tar.gz (the python version, not the binary or MATLAB "
                         f"one)") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path} holds a {type(entry).__name__}, not a CIFAR-100 pickle (a dict with data and "
                         f"fine_labels)")
    return _str_keys(entry)


@DATASETS.register()
class SyntheticCIFAR100(_CIFARBase):
    """A CIFAR-100-shaped stand-in: 100 classes of 32x32x3 uint8 images with learnable structure.

    Each class owns a smooth colour pattern (a random 4x4x3 map upsampled to
    32x32) and an oriented stripe texture; a sample is its class pattern, shifted
    and contrast-jittered, plus noise. Content depends only on ``(split, index)``. ``class_names`` are
    CIFAR-100's (:data:`FINE_LABEL_NAMES`).
    """

    def __init__(self, root: str | None = None, split: str = "train", augment: bool | None = None,
                 mean=CIFAR100_MEAN, std=CIFAR100_STD, num_samples: int | None = None, seed: int = 0):
        super().__init__(split, augment, mean, std)
        n = num_samples or (2000 if split == "train" else 500)
        rng = np.random.default_rng(seed)
        coarse = rng.uniform(0, 255, size=(self.num_classes, 4, 4, 3))
        self.prototypes = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)  # 100 x 32 x 32 x 3
        yy, xx = np.mgrid[0:32, 0:32]
        angles = rng.uniform(0, np.pi, self.num_classes)
        freqs = rng.uniform(0.3, 1.2, self.num_classes)
        self.textures = np.stack([np.sin(freqs[c] * (np.cos(angles[c]) * xx + np.sin(angles[c]) * yy))
                                  for c in range(self.num_classes)])[..., None] * 40.0
        split_offset = 0 if split == "train" else 1_000_003
        self.targets = [int(t) for t in np.random.default_rng(seed + 1 + split_offset).integers(0, 100, n)]
        self._seed = seed + split_offset

    @property
    def images(self):  # generated lazily: a read-only view with __getitem__
        return _LazyImages(self)

    def render(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self._seed, index])
        c = self.targets[index]
        img = self.prototypes[c] * rng.uniform(0.7, 1.1) + self.textures[c]
        img = np.roll(img, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
        img = img + rng.normal(0, 25.0, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)


class _LazyImages:
    def __init__(self, ds: SyntheticCIFAR100):
        self.ds = ds

    def __getitem__(self, index: int) -> np.ndarray:
        return self.ds.render(index)

    def __len__(self) -> int:
        return len(self.ds.targets)


def write_cifar100_pickles(root: str | Path, images: dict[str, np.ndarray], labels: dict[str, list[int]]) -> Path:
    """Write arrays in the official ``cifar-100-python`` pickle format (for tests and tools).

    ``images[split]``: N x 32 x 32 x 3 uint8; ``labels[split]``: N fine labels.
    """
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, imgs in images.items():
        entry = {"filenames": [f"{split}_{i}.png" for i in range(len(imgs))],
                 "batch_label": f"{split} batch", "fine_labels": list(labels[split]),
                 "coarse_labels": [t // 5 for t in labels[split]],
                 "data": np.asarray(imgs, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(len(imgs), -1)}
        with open(folder / split, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)],
                     "coarse_label_names": [f"super_{i}" for i in range(20)]}, f)
    return folder
