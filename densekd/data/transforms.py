"""Joint image / dense-target transforms for segmentation (and other dense tasks), built on albumentations.

Both pipelines take a uint8 RGB image (H x W x 3 numpy array), a label map (H x W integer array) and any
number of extra dense targets passed by name (``depth=...``, each H x W), and return a dict of tensors:
``image`` 3 x H' x W' float (normalised), ``target`` H' x W' long, and each extra as H' x W' float32.

Geometry is shared: the label and every extra target go through exactly the same scale / pad / crop / flip
as the image, with nearest-neighbour interpolation (so label ids and depth values are never blended).

Reproducibility: albumentations 2.x draws from its own generators, not the global ones. At every call the
pipeline is re-seeded from the *global* numpy RNG (one ``np.random.randint`` draw), so a trainer that seeds
the global RNGs per sample (or per worker) gets identical augmentations on resume.
"""
from __future__ import annotations

import random
from typing import Mapping, Sequence

import albumentations as A
import cv2
import numpy as np
import torch

#: ImageNet statistics (RGB, fraction of 255), the usual normalisation for ImageNet-style encoders.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pair(size, name: str) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{name} must be an int or a (height, width) pair of positive ints; got {size!r}")
    return size


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an H x W x 3 RGB array; got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (0..255) before normalisation; got dtype {image.dtype}")
    return image


def _check_dense(name: str, arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.shape != hw:
        raise ValueError(f"dense target {name!r} has shape {arr.shape} but the image is {hw[0]} x {hw[1]}; "
                         f"every dense target must be H x W at the image's resolution")
    return arr


class _SeededPipeline:
    """A Compose re-seeded from the global numpy RNG at every call (see module docstring)."""

    def __init__(self, transforms: list, mean: Sequence[float], std: Sequence[float]):
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 RGB values (std > 0) as fractions of 255; got {mean}, {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.normalize = A.Normalize(mean=self.mean, std=self.std, max_pixel_value=255.0, p=1.0)
        self.compose = A.Compose(transforms + [self.normalize]) if transforms else A.Compose([self.normalize])

    def _reseed(self) -> None:
        seed = int(np.random.randint(2**31))
        # One shared generator for all transforms (``set_random_seed`` would give each transform its own
        # generator with the same seed, correlating e.g. the flip decision with the scale factor).
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def run(self, image: np.ndarray, mask: np.ndarray, names: Sequence[str]) -> dict:
        self._reseed()
        out = self.compose(image=image, mask=mask)
        img = torch.from_numpy(np.ascontiguousarray(out["image"].transpose(2, 0, 1))).float()
        stacked = out["mask"]
        if stacked.ndim == 2:
            stacked = stacked[:, :, None]
        result = {"image": img, "target": torch.from_numpy(np.rint(stacked[:, :, 0]).astype(np.int64))}
        for k, name in enumerate(names):
            result[name] = torch.from_numpy(np.ascontiguousarray(stacked[:, :, k + 1], dtype=np.float32))
        return result

    @staticmethod
    def stack(image: np.ndarray, target: np.ndarray, extras: Mapping[str, np.ndarray]) -> np.ndarray:
        """Label and extras as one H x W x (1+K) float32 mask, so one pad value per channel is possible."""
        hw = image.shape[:2]
        target = _check_dense("target", target, hw)
        layers = [target.astype(np.float32)]
        for name, arr in extras.items():
            layers.append(_check_dense(name, arr, hw).astype(np.float32))
        return np.stack(layers, axis=2) if len(layers) > 1 else layers[0]


class SegTrainTransform:
    """Training augmentation for semantic segmentation (PSPNet / DeepLab Cityscapes recipe).

    Random scale by a factor in ``scale_range`` -> pad to at least ``crop_size`` (image with 0, label with
    ``ignore_index``, extras with ``extra_fill[name]``, default ``ignore_index``) -> random ``crop_size`` crop ->
    horizontal flip (p=0.5, if ``flip``) -> colour jitter (p=0.8, if ``photometric``: brightness, contrast,
    saturation 0.3, hue 0.05) -> normalise with ``mean``/``std`` (fractions of 255) -> tensors.

    Call: ``t(image, target, **extras)`` with ``image`` H x W x 3 uint8, ``target`` H x W ints, extras H x W.
    Returns ``{'image': 3 x h x w float, 'target': h x w long, **{name: h x w float32}}`` with ``(h, w) =
    crop_size``. Defaults: crop 512 x 1024, scale 0.5-2.0, flip on, photometric off, ImageNet mean/std.
    ``crop_size=None`` skips padding and cropping (output size follows the random scale).
    """

    def __init__(self, crop_size: int | Sequence[int] | None = (512, 1024),
                 scale_range: Sequence[float] | None = (0.5, 2.0), flip: bool = True, photometric: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 ignore_index: int = 255, extra_fill: Mapping[str, float] | None = None):
        self.crop_size = _pair(crop_size, "crop_size")
        if scale_range is not None:
            scale_range = tuple(float(s) for s in scale_range)
            if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high; got {scale_range!r}")
        self.scale_range = scale_range
        self.ignore_index = int(ignore_index)
        self.extra_fill = dict(extra_fill or {})
        ts: list = []
        if scale_range is not None and scale_range != (1.0, 1.0):
            lo, hi = scale_range
            # RandomScale samples the factor from (1 + low, 1 + high).
            ts.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_LINEAR,
                                    mask_interpolation=cv2.INTER_NEAREST, p=1.0))
        self._pad_index = None
        if self.crop_size is not None:
            h, w = self.crop_size
            self._pad_index = len(ts)
            ts.append(A.PadIfNeeded(min_height=h, min_width=w, position="center", border_mode=cv2.BORDER_CONSTANT,
                                    fill=0, fill_mask=self.ignore_index, p=1.0))
            ts.append(A.RandomCrop(height=h, width=w, p=1.0))
        if flip:
            ts.append(A.HorizontalFlip(p=0.5))
        if photometric:
            ts.append(A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8))
        self.pipeline = _SeededPipeline(ts, mean, std)

    def __call__(self, image: np.ndarray, target: np.ndarray, **extras: np.ndarray) -> dict[str, torch.Tensor]:
        image = _check_image(image)
        mask = _SeededPipeline.stack(image, target, extras)
        if self._pad_index is not None:
            fills = [float(self.ignore_index)] + [float(self.extra_fill.get(n, self.ignore_index)) for n in extras]
            self.pipeline.compose.transforms[self._pad_index].fill_mask = fills[0] if len(fills) == 1 else tuple(fills)
        return self.pipeline.run(image, mask, list(extras))

    def __repr__(self) -> str:
        return (f"SegTrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, "
                f"ignore_index={self.ignore_index})")


class SegEvalTransform:
    """Evaluation transform: normalise only, full image (no resize, crop or flip).

    Call: ``t(image, target, **extras)``; returns the same dict of tensors as :class:`SegTrainTransform` at the
    input resolution. Defaults: ImageNet mean/std.
    """

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.pipeline = _SeededPipeline([], mean, std)

    def __call__(self, image: np.ndarray, target: np.ndarray, **extras: np.ndarray) -> dict[str, torch.Tensor]:
        image = _check_image(image)
        mask = _SeededPipeline.stack(image, target, extras)
        return self.pipeline.run(image, mask, list(extras))


def denormalize(image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                std: Sequence[float] = IMAGENET_STD) -> np.ndarray:
    """Inverse of the normalisation: 3 x H x W float tensor -> H x W x 3 uint8 array (for visualisation)."""
    m = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    x = (image.detach().cpu() * s + m).clamp(0, 1) * 255.0
    return x.round().byte().permute(1, 2, 0).numpy()
