"""Dataset wrappers that give each sample more views: several augmented copies for a cohort of students, a
held-out split, and a strongly augmented second view (MLKD).

Dataset wrappers for cohorts of students: several augmented views of each sample, and a held-out split.

* :class:`MultiViewDataset` draws the inner dataset's augmentation ``views`` times per sample, so that each
  student of a cohort (KDCL: "each student is fed with a differently distorted version of the image") reads
  its own view, ``image_0`` ... ``image_{views-1}``, through ``strategy.student_inputs``.
* :class:`HoldoutSplit` splits a dataset once, reproducibly, into a training part and a held-out part; a
  strategy that fits something on held-out data (KDCL-Linear's ensemble weights, KDCL-General's error
  correlations) asks the training part for :meth:`HoldoutSplit.holdout_set`.

Both are registered datasets, compose with each other and with the other wrappers
(``MultiViewDataset(dataset=HoldoutSplit(dataset=CIFAR100(...)))``), and forward unknown attributes
(``num_classes``, ``class_names``...) to the inner dataset; ``--synthetic`` re-types the innermost dataset.
No method knowledge: the engine sees an ordinary dataset whose samples have more keys.

A second, strongly augmented view of each training image (MLKD's weak / strong pairs).

:class:`StrongAugmentView` wraps a dataset whose ``load(index)`` returns the raw ``H x W x 3`` uint8 image (CIFAR-100,
STL-10, TinyImageNet) and adds ``batch[key]`` (default ``'image_strong'``): the same raw image, padded and randomly
cropped back to its size, flipped with p = 0.5, then put through :func:`rand_augment` (FixMatch-style RandAugment:
``num_ops`` random operations at random magnitudes, then Cutout) and normalised with the inner dataset's
``mean`` / ``std``. The inner sample (its own augmentation: the weak view) is kept as it is, so the strong view's crop
and flip are drawn independently of the weak view's, as in MLKD's release (two torchvision pipelines on one PIL image).

The strong policy is the one MLKD's release trains with (as kept in the logit-standardisation release,
``mdistiller/dataset/cifar100.py``, whose MLKD code is the same): ``RandomCrop(32, padding=4)``,
``RandomHorizontalFlip()``, then ``RandAugment(2, 10)`` whose magnitude argument is unused: two operations drawn with
replacement from the 14 below, each at a magnitude drawn uniformly from its range, then Cutout of a square of side
``U(0, 0.5) * W`` filled with grey (125, 123, 114). PIL performs the operations (nearest-neighbour resampling, black
fill outside the image for the geometric ones).

==============  =====================  =====================================================================
operation       magnitude range        effect (PIL)
==============  =====================  =====================================================================
AutoContrast    --                     ``ImageOps.autocontrast``
Brightness      [0.05, 0.95]           ``ImageEnhance.Brightness(v)`` (blend with black)
Color           [0.05, 0.95]           ``ImageEnhance.Color(v)`` (blend with the grey image)
Contrast        [0.05, 0.95]           ``ImageEnhance.Contrast(v)`` (blend with the mean grey)
Equalize        --                     ``ImageOps.equalize``
Identity        --                     the image unchanged
Posterize       [4, 8]                 ``ImageOps.posterize(max(1, int(v)))`` bits kept
Rotate          [-30, 30] degrees      ``Image.rotate(v)`` (counter-clockwise)
Sharpness       [0.05, 0.95]           ``ImageEnhance.Sharpness(v)``
ShearX          [-0.3, 0.3]            affine ``(1, v, 0, 0, 1, 0)``
ShearY          [-0.3, 0.3]            affine ``(1, 0, 0, v, 1, 0)``
Solarize        [0, 256]               ``ImageOps.solarize(v)`` (values >= v inverted)
TranslateX      [-0.3, 0.3] x width    affine ``(1, 0, v W, 0, 1, 0)``
TranslateY      [-0.3, 0.3] x height   affine ``(1, 0, 0, 0, 1, v H)``
==============  =====================  =====================================================================

Draws come from NumPy's global RNG (the release uses Python's ``random``), which the loader seeds per sample, so
views are reproducible across resume and workers.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps
from torch.utils.data import Dataset

from densekd.data.cifar import cifar_augment, to_normalized_tensor
from densekd.registry import DATASETS

__all__ = ["MultiViewDataset", "HoldoutSplit", "find_wrapper", "StrongAugmentView", "rand_augment", "cutout",
           "RAND_AUGMENT_OPS", "CUTOUT_FILL"]


def _build(dataset: Any, where: str):
    return DATASETS.build(copy.deepcopy(dataset), where=where) if isinstance(dataset, dict) else dataset


def find_wrapper(dataset: Any, cls: type):
    """The first dataset of type ``cls`` in the chain ``dataset``, ``dataset.dataset``, ... (or None)."""
    seen = 0
    while dataset is not None and seen < 16:
        if isinstance(dataset, cls):
            return dataset
        dataset = getattr(dataset, "__dict__", {}).get("dataset")
        seen += 1
    return None


class _Forwarding(Dataset):
    """Unknown attributes are the inner dataset's (``self.dataset``)."""

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)


@DATASETS.register()
class MultiViewDataset(_Forwarding):
    """Item ``i``: the inner sample drawn ``views`` times; each key in ``keys`` becomes ``<key>_0`` ...
    ``<key>_{views-1}`` (one independent augmentation each), every other key (``target``, ``index``...) is
    taken from the first draw.

    The views differ because the inner dataset's augmentation draws from the global RNGs, which the loader
    seeds once per sample: successive draws are different and the whole sample is still a function of
    ``(seed, epoch, position)`` (exact resume, any number of workers). A dataset without augmentation gives
    identical views.

    Args:
        dataset: the inner dataset (object or config dict).
        views: number of views (>= 1), e.g. one per KDCL student.
        keys: the sample keys to draw per view (default ``('image',)``); the plain key is not kept.
    """

    def __init__(self, dataset: Any, views: int = 2, keys: Sequence[str] = ("image",)):
        self.dataset = _build(dataset, "MultiViewDataset.dataset")
        if int(views) < 1:
            raise ValueError(f"MultiViewDataset: views must be >= 1, got {views}")
        self.views = int(views)
        self.keys = [keys] if isinstance(keys, str) else list(keys)
        if not self.keys:
            raise ValueError("MultiViewDataset: keys is empty; name the sample keys to draw per view, e.g. ('image',)")

    def view_keys(self, key: str = "image") -> list[str]:
        return [f"{key}_{v}" for v in range(self.views)]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        out: dict = {}
        for v in range(self.views):
            sample = self.dataset[index]
            if not isinstance(sample, dict):
                raise TypeError(f"MultiViewDataset expects dict samples from {type(self.dataset).__name__}, got "
                                f"{type(sample).__name__}")
            missing = [k for k in self.keys if k not in sample]
            if missing:
                raise KeyError(f"MultiViewDataset: the samples of {type(self.dataset).__name__} have no key(s) "
                               f"{missing} (they have {sorted(sample)}); set keys= to the keys to draw per view")
            if v == 0:
                out.update({k: x for k, x in sample.items() if k not in self.keys})
            for k in self.keys:
                out[f"{k}_{v}"] = sample[k]
        return out


@DATASETS.register()
class HoldoutSplit(_Forwarding):
    """One part of a fixed random split of ``dataset`` into training and held-out samples.

    The split is a permutation of ``range(len(dataset))`` by ``numpy.random.default_rng(seed)``: its first
    ``n_holdout`` indices (sorted) are the held-out part, the rest (sorted) the training part, so both parts
    are the same in every process and every session. ``holdout`` is a fraction of the dataset (``0 < h < 1``)
    or a number of samples (``>= 1``).

    :meth:`holdout_set` returns the complementary held-out part. When ``dataset`` is a config dict whose type
    takes ``augment``, the held-out part is built from a copy with ``augment=holdout_augment`` (default
    ``False``: held-out predictions are taken on the plain images); otherwise it shares the inner dataset.

    Args:
        dataset: the inner dataset (object or config dict).
        holdout: held-out fraction or count (default 0.1).
        part: ``'train'`` or ``'holdout'``.
        seed: the split's seed (default 0; independent of the run's seed, so seeds share the split).
        holdout_augment: augmentation of the held-out part built by :meth:`holdout_set`.
    """

    PARTS = ("train", "holdout")

    def __init__(self, dataset: Any, holdout: float = 0.1, part: str = "train", seed: int = 0,
                 holdout_augment: bool = False):
        if part not in self.PARTS:
            raise ValueError(f"HoldoutSplit: part must be one of {self.PARTS}, got {part!r}")
        self._spec = copy.deepcopy(dataset) if isinstance(dataset, dict) else None
        self.dataset = _build(dataset, "HoldoutSplit.dataset")
        n = len(self.dataset)
        n_hold = int(round(holdout * n)) if 0 < float(holdout) < 1 else int(holdout)
        if float(holdout) <= 0 or not 1 <= n_hold < n:
            raise ValueError(f"HoldoutSplit: holdout={holdout} gives {n_hold} held-out samples of {n}; give a "
                             f"fraction in (0, 1) or a count in [1, {n - 1}]")
        self.holdout, self.part, self.seed, self.holdout_augment = holdout, part, int(seed), bool(holdout_augment)
        self.n_holdout = n_hold
        perm = np.random.default_rng(self.seed).permutation(n)
        chosen = perm[:n_hold] if part == "holdout" else perm[n_hold:]
        self.indices = np.sort(chosen).astype(np.int64)
        targets = getattr(self.dataset, "targets", None)
        self.targets = None if targets is None else [int(targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def inner_index(self, index: int) -> int:
        return int(self.indices[index])

    def __getitem__(self, index: int):
        return self.dataset[self.inner_index(index)]

    def sample_files(self, index: int) -> list[str]:
        fn = getattr(self.dataset, "sample_files", None)
        return list(fn(self.inner_index(index))) if fn is not None else []

    def check_sample(self, index: int) -> None:
        """``tools/check_data.py``: the inner dataset's check of the sample this index maps to."""
        fn = getattr(self.dataset, "check_sample", None)
        if fn is not None:
            fn(self.inner_index(index))
        else:
            self.dataset[self.inner_index(index)]

    def holdout_set(self) -> "HoldoutSplit":
        """The held-out part of the same split (see the class docstring for its augmentation)."""
        inner: Any = self.dataset
        if self._spec is not None:
            spec = copy.deepcopy(self._spec)
            cls = DATASETS.get(spec["type"])
            if "augment" in inspect.signature(cls.__init__).parameters:
                spec["augment"] = self.holdout_augment
            inner = spec
        return HoldoutSplit(inner, holdout=self.holdout, part="holdout", seed=self.seed,
                            holdout_augment=self.holdout_augment)


#: Cutout's fill colour in MLKD's release (about the CIFAR mean, in 0..255).
CUTOUT_FILL = (125, 123, 114)
_AFFINE = Image.Transform.AFFINE


def _affine(img: Image.Image, coeffs: tuple) -> Image.Image:
    return img.transform(img.size, _AFFINE, coeffs)


#: name -> (operation(img, v), low, high): the FixMatch-style list of MLKD's release.
RAND_AUGMENT_OPS: dict[str, tuple[Callable[[Image.Image, float], Image.Image], float, float]] = {
    "AutoContrast": (lambda img, v: ImageOps.autocontrast(img), 0.0, 1.0),
    "Brightness": (lambda img, v: ImageEnhance.Brightness(img).enhance(v), 0.05, 0.95),
    "Color": (lambda img, v: ImageEnhance.Color(img).enhance(v), 0.05, 0.95),
    "Contrast": (lambda img, v: ImageEnhance.Contrast(img).enhance(v), 0.05, 0.95),
    "Equalize": (lambda img, v: ImageOps.equalize(img), 0.0, 1.0),
    "Identity": (lambda img, v: img, 0.0, 1.0),
    "Posterize": (lambda img, v: ImageOps.posterize(img, max(1, int(v))), 4.0, 8.0),
    "Rotate": (lambda img, v: img.rotate(v), -30.0, 30.0),
    "Sharpness": (lambda img, v: ImageEnhance.Sharpness(img).enhance(v), 0.05, 0.95),
    "ShearX": (lambda img, v: _affine(img, (1, v, 0, 0, 1, 0)), -0.3, 0.3),
    "ShearY": (lambda img, v: _affine(img, (1, 0, 0, v, 1, 0)), -0.3, 0.3),
    "Solarize": (lambda img, v: ImageOps.solarize(img, v), 0.0, 256.0),
    "TranslateX": (lambda img, v: _affine(img, (1, 0, v * img.size[0], 0, 1, 0)), -0.3, 0.3),
    "TranslateY": (lambda img, v: _affine(img, (1, 0, 0, 0, 1, v * img.size[1])), -0.3, 0.3),
}


def cutout(img: Image.Image, fraction: float, fill: Sequence[int] = CUTOUT_FILL) -> Image.Image:
    """A square of side ``fraction * width`` centred at a uniformly random pixel (clipped at the borders) filled
    with ``fill``; ``fraction <= 0`` returns the image unchanged."""
    if fraction <= 0:
        return img
    side = fraction * img.size[0]
    w, h = img.size
    cx, cy = np.random.uniform(w), np.random.uniform(h)
    x0, y0 = int(max(0, cx - side / 2.0)), int(max(0, cy - side / 2.0))
    x1, y1 = min(w, x0 + side), min(h, y0 + side)
    img = img.copy()
    ImageDraw.Draw(img).rectangle((x0, y0, x1, y1), fill=tuple(int(c) for c in fill))
    return img


def _check_ops(ops: Sequence[str] | None) -> list[str]:
    names = list(ops) if ops is not None else list(RAND_AUGMENT_OPS)
    unknown = [n for n in names if n not in RAND_AUGMENT_OPS]
    if unknown or not names:
        raise ValueError(f"RandAugment: unknown or no operations {unknown or names} (choose from "
                         f"{sorted(RAND_AUGMENT_OPS)})")
    return names


def rand_augment(image: np.ndarray, num_ops: int = 2, max_cutout: float = 0.5,
                 ops: Sequence[str] | None = None) -> np.ndarray:
    """FixMatch-style RandAugment of an ``H x W x 3`` uint8 image: ``num_ops`` operations drawn uniformly with
    replacement from ``ops`` (default: all of :data:`RAND_AUGMENT_OPS`), each at a magnitude drawn uniformly from
    its range, then :func:`cutout` with a side fraction drawn from ``U(0, max_cutout)``. Returns uint8."""
    names = _check_ops(ops)
    img = Image.fromarray(np.ascontiguousarray(image))
    for k in np.random.randint(len(names), size=int(num_ops)):
        fn, low, high = RAND_AUGMENT_OPS[names[int(k)]]
        img = fn(img, low + (high - low) * float(np.random.rand()))
    img = cutout(img, float(np.random.rand()) * max_cutout)
    return np.array(img, dtype=np.uint8)  # a writable copy


@DATASETS.register()
class StrongAugmentView(Dataset):
    """Item ``i`` is the inner sample plus ``key``: a strongly augmented view of the same raw image (see the
    module docstring for the policy).

    Args:
        dataset: the inner dataset (object or config dict) with ``load(index) -> (H x W x 3 uint8, label)``.
        key: the batch key of the strong view (default ``'image_strong'``, what MLKD reads).
        padding: zero padding before the random crop back to the image's size (4; 0 skips the crop).
        flip: random horizontal flip with p = 0.5 (True).
        num_ops: RandAugment operations per image (2); ``max_cutout``: the largest Cutout side as a fraction of
            the width (0.5); ``ops``: a subset of :data:`RAND_AUGMENT_OPS` (default all 14).
        mean, std: normalisation (fractions of 255); default the inner dataset's ``mean`` / ``std``.

    ``len()``, ``targets``, ``num_classes``, ``class_names`` and other attributes are the inner dataset's. The
    strong view must come out with the inner sample's ``image`` shape (a dataset whose own transform resizes
    cannot be wrapped as it is).
    """

    def __init__(self, dataset: Any, key: str = "image_strong", padding: int = 4, flip: bool = True,
                 num_ops: int = 2, max_cutout: float = 0.5, ops: Sequence[str] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset, where="StrongAugmentView.dataset")
        if not callable(getattr(dataset, "load", None)):
            raise ValueError(f"StrongAugmentView needs the inner dataset's raw images through load(index) -> "
                             f"(H x W x 3 uint8, label); {type(dataset).__name__} has no load()")
        mean = mean if mean is not None else getattr(dataset, "mean", None)
        std = std if std is not None else getattr(dataset, "std", None)
        if mean is None or std is None:
            raise ValueError(f"StrongAugmentView: {type(dataset).__name__} exposes no mean/std; pass mean=(r, g, b) "
                             f"and std=(r, g, b) as fractions of 255 (the inner dataset's normalisation)")
        if not isinstance(key, str) or not key:
            raise ValueError(f"StrongAugmentView: key must be a non-empty batch key, got {key!r}")
        if int(padding) < 0 or int(num_ops) < 0 or not 0 <= float(max_cutout) <= 1:
            raise ValueError(f"StrongAugmentView: padding and num_ops must be >= 0 and max_cutout in [0, 1]; got "
                             f"padding={padding}, num_ops={num_ops}, max_cutout={max_cutout}")
        if ops is not None:
            _check_ops(ops)
        self.dataset = dataset
        self.key = key
        self.padding, self.flip = int(padding), bool(flip)
        self.num_ops, self.max_cutout = int(num_ops), float(max_cutout)
        self.ops = list(ops) if ops is not None else None
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # forward targets / num_classes / class_names to the inner dataset
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def strong_view(self, image: np.ndarray) -> np.ndarray:
        """The strong augmentation of one raw ``H x W x 3`` uint8 image (uint8, same size)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"StrongAugmentView: load() must return an H x W x 3 uint8 image, got shape "
                             f"{image.shape} and dtype {image.dtype}")
        if self.padding:
            image = cifar_augment(image, self.padding) if self.flip else _crop(image, self.padding)
        elif self.flip and np.random.rand() < 0.5:
            image = image[:, ::-1]
        return rand_augment(image, self.num_ops, self.max_cutout, self.ops)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        if not isinstance(sample, dict) or "image" not in sample:
            raise ValueError(f"StrongAugmentView: the inner dataset must return dict samples with 'image'; got "
                             f"{type(sample).__name__}")
        image, _ = self.dataset.load(index)
        strong = to_normalized_tensor(self.strong_view(image), self.mean, self.std)
        if tuple(strong.shape) != tuple(sample["image"].shape):
            raise ValueError(f"StrongAugmentView: the strong view is {tuple(strong.shape)} but the inner sample's "
                             f"image is {tuple(sample['image'].shape)}; the wrapper crops at the raw image size, so "
                             f"wrap a dataset whose transform keeps that size (e.g. CIFAR-100)")
        sample[self.key] = strong
        return sample


def _crop(image: np.ndarray, padding: int) -> np.ndarray:
    """Random crop of the zero-padded image back to its size, without the flip of :func:`cifar_augment`."""
    h, w = image.shape[:2]
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
    top, left = np.random.randint(0, 2 * padding + 1, size=2)
    return padded[top:top + h, left:left + w]
