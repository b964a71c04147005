"""Image views for classification-style datasets (STL-10, TinyImageNet): one geometric augmentation, then the
RGB image and / or its CIE Lab channels as separate batch keys.

Views (``keys``) of one sample, all cut from the SAME augmented uint8 image:

* ``image``: 3 x S x S float32, RGB normalised with ``mean`` / ``std`` (fractions of 255);
* ``L``: 1 x S x S float32, CIE lightness normalised as ``(L - 50) / 50``;
* ``ab``: 2 x S x S float32, the chromaticity ``((a - 6.025) / 92.208, (b + 6.6895) / 101.1675)``.

The Lab statistics (:data:`LAB_MEAN`, :data:`LAB_STD`) are the mid-points and half-ranges of L, a and b over
the sRGB gamut (L in [0, 100], a in [-86.183, 98.233], b in [-107.857, 94.478]): the normalisation of CMC's
and CRD's STL-10 ``L`` / ``ab`` code. Lab is computed AFTER the geometric augmentation, so the two views of a
sample always show the same crop and flip (a student on ``ab`` and a teacher on ``L`` see one picture).

Colour conversion (:func:`rgb_to_lab`, :func:`lab_to_rgb`): sRGB (IEC 61966-2-1 gamma) -> linear RGB -> CIE
XYZ (sRGB primaries) -> CIE L*a*b* relative to the D65 white, the definition of ``skimage.color.rgb2lab``
with its default illuminant (the tests compare the two on many colours).

Geometry (``augment=True``), from NumPy's global RNG, which the loader seeds per sample:

* ``crop='resized'``: a random crop covering ``crop_scale`` of the image area with aspect ratio in
  ``crop_ratio`` (torchvision's ``RandomResizedCrop`` sampling: 10 tries, then a centre crop), resized to
  ``size`` x ``size``; then a horizontal flip with p = 0.5 (``flip``).
* ``crop='pad'``: the image resized to ``size``, zero-padded by ``padding`` pixels, a random ``size`` crop
  (CIFAR's augmentation); then the flip.

Without augmentation the whole image is resized to ``size`` (``size=None``: kept as it is). Shrinking uses
area interpolation (anti-aliased), enlarging bilinear.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

try:  # albumentations ships opencv-python-headless
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

#: Mid-points of L, a, b over the sRGB gamut: (0 + 100) / 2, (-86.183 + 98.233) / 2, (-107.857 + 94.478) / 2.
LAB_MEAN = (50.0, 6.025, -6.6895)
#: Half-ranges of L, a, b over the sRGB gamut: (100 - 0) / 2, (98.233 + 86.183) / 2, (94.478 + 107.857) / 2.
LAB_STD = (50.0, 92.208, 101.1675)

#: Linear sRGB -> CIE XYZ (sRGB primaries, D65 white).
XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]])
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
#: CIE D65 reference white (2 degree observer), Y = 1.
D65_WHITE = (0.95047, 1.0, 1.08883)

VIEW_KEYS = ("image", "L", "ab")
CROPS = ("resized", "pad")

_EPS = (6.0 / 29.0) ** 3           # CIE's threshold of the cube-root part of f(t) (0.008856)
_SLOPE = (29.0 / 6.0) ** 2 / 3.0   # slope of the linear part (7.787)


# ---------------------------------------------------------------------------------------------- colour
def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB gamma-encoded values in [0, 1] -> linear light."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear light -> sRGB gamma-encoded values (inverse of :func:`srgb_to_linear`)."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(np.maximum(c, 0.0031308), 1 / 2.4) - 0.055)


def _as_unit_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.shape[-1:] != (3,):
        raise ValueError(f"an RGB array must have 3 channels on its last axis; got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float64) / 255.0
    if rgb.dtype.kind != "f":
        raise ValueError(f"RGB must be uint8 (0..255) or float (0..1); got dtype {rgb.dtype}")
    return rgb.astype(np.float64)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (``... x 3``; uint8 0..255 or float 0..1) -> CIE L*a*b* (``... x 3`` float64; L in [0, 100]) under
    the D65 white point."""
    xyz = srgb_to_linear(_as_unit_rgb(rgb)) @ XYZ_FROM_RGB.T
    t = xyz / np.asarray(D65_WHITE)
    f = np.where(t > _EPS, np.cbrt(t), _SLOPE * t + 16.0 / 116.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab: np.ndarray, clip: bool = True) -> np.ndarray:
    """CIE L*a*b* (``... x 3``, D65) -> sRGB float in [0, 1] (``clip=False`` keeps out-of-gamut values)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    t = np.where(f > 6.0 / 29.0, f ** 3, (f - 16.0 / 116.0) / _SLOPE)
    rgb = linear_to_srgb((t * np.asarray(D65_WHITE)) @ RGB_FROM_XYZ.T)
    return np.clip(rgb, 0.0, 1.0) if clip else rgb


def normalize_lab(lab: np.ndarray, mean: Sequence[float] = LAB_MEAN, std: Sequence[float] = LAB_STD
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``H x W x 3`` Lab -> (``L`` 1 x H x W, ``ab`` 2 x H x W) float32 tensors, ``(v - mean) / std`` per channel."""
    norm = (np.asarray(lab, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)
    chw = torch.from_numpy(np.ascontiguousarray(norm.transpose(2, 0, 1), dtype=np.float32))
    return chw[:1].clone(), chw[1:].clone()


def denormalize_lab(L: torch.Tensor, ab: torch.Tensor, mean: Sequence[float] = LAB_MEAN,
                    std: Sequence[float] = LAB_STD) -> np.ndarray:
    """The views ``L`` (1 x H x W) and ``ab`` (2 x H x W) back to an ``H x W x 3`` Lab array (float64)."""
    chw = torch.cat([L.detach().cpu(), ab.detach().cpu()], 0).double().numpy()
    return chw.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)


def views_to_rgb(L: torch.Tensor, ab: torch.Tensor, mean: Sequence[float] = LAB_MEAN,
                 std: Sequence[float] = LAB_STD) -> np.ndarray:
    """The ``L`` and ``ab`` views of one sample as an ``H x W x 3`` uint8 RGB picture (for figures and tests)."""
    rgb = lab_to_rgb(denormalize_lab(L, ab, mean, std))
    return np.rint(rgb * 255.0).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- geometry
def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``H x W x 3`` uint8 -> ``size`` = (h, w): area interpolation when shrinking, bilinear when enlarging."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    interp = cv2.INTER_AREA if size[0] <= h and size[1] <= w else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (int(size[1]), int(size[0])), interpolation=interp)
    return out.reshape(int(size[0]), int(size[1]), -1) if out.ndim == 2 else out


def random_resized_box(h: int, w: int, scale: Sequence[float], ratio: Sequence[float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop covering ``scale`` of the area with aspect (w / h) in
    ``ratio`` (log-uniform): torchvision's ``RandomResizedCrop.get_params`` on NumPy's global RNG."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * np.random.uniform(scale[0], scale[1])
        aspect = math.exp(np.random.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(np.random.randint(0, h - ch + 1)), int(np.random.randint(0, w - cw + 1)), ch, cw
    in_ratio = w / h  # fallback: the largest centre crop within the ratio range
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class ImageViews:
    """Geometric augmentation of an ``H x W x 3`` uint8 RGB image, then its views as tensors (module docstring).

    Args:
        keys: the views to return, a subset of ``('image', 'L', 'ab')`` (e.g. ``('L', 'ab')``).
        size: output side (int) or (h, w); ``None`` keeps the input size.
        augment: random crop (``crop``) and flip; off: resize only.
        crop: ``'resized'`` (random resized crop, ``crop_scale`` / ``crop_ratio``) or ``'pad'`` (pad by
            ``padding`` and crop back, after resizing to ``size``).
        flip: horizontal flip with p = 0.5 when augmenting.
        mean, std: RGB normalisation of ``image`` (fractions of 255).
        lab_mean, lab_std: the Lab statistics of ``L`` (index 0) and ``ab`` (indices 1, 2).
    """

    def __init__(self, keys: Sequence[str] = ("image",), size: int | Sequence[int] | None = None,
                 augment: bool = False, crop: str = "resized", crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), padding: int = 4, flip: bool = True,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 lab_mean: Sequence[float] = LAB_MEAN, lab_std: Sequence[float] = LAB_STD):
        if isinstance(keys, str):
            keys = (keys,)
        keys = tuple(keys)
        bad = [k for k in keys if k not in VIEW_KEYS]
        if not keys or bad or len(set(keys)) != len(keys):
            raise ValueError(f"keys must be distinct views out of {VIEW_KEYS}; got {keys!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}; got {crop!r}")
        if size is not None:
            size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"size must be a positive int or (h, w); got {size!r}")
        scale = tuple(float(s) for s in crop_scale)
        ratio = tuple(float(r) for r in crop_ratio)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1; got {crop_scale!r}")
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop_ratio must be (low, high) with 0 < low <= high; got {crop_ratio!r}")
        if int(padding) < 0:
            raise ValueError(f"padding must be >= 0; got {padding!r}")
        for name, vals, n in (("mean", mean, 3), ("std", std, 3), ("lab_mean", lab_mean, 3), ("lab_std", lab_std, 3)):
            if len(vals) != n:
                raise ValueError(f"{name} must have {n} values; got {vals!r}")
        if min(std) <= 0 or min(lab_std) <= 0:
            raise ValueError("std and lab_std must be > 0")
        self.keys, self.size, self.augment, self.crop = keys, size, bool(augment), crop
        self.crop_scale, self.crop_ratio, self.padding, self.flip = scale, ratio, int(padding), bool(flip)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.lab_mean, self.lab_std = tuple(float(m) for m in lab_mean), tuple(float(s) for s in lab_std)

    def geometry(self, image: np.ndarray) -> np.ndarray:
        """The augmented (or resized) ``h x w x 3`` uint8 image every view is computed from."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be an H x W x 3 uint8 RGB array; got shape {image.shape}, dtype "
                             f"{image.dtype}")
        h, w = image.shape[:2]
        size = self.size or (h, w)
        if not self.augment:
            return resize(image, size)
        if self.crop == "resized":
            top, left, ch, cw = random_resized_box(h, w, self.crop_scale, self.crop_ratio)
            out = resize(image[top:top + ch, left:left + cw], size)
        else:
            out = resize(image, size)
            p = self.padding
            if p:
                padded = np.pad(out, ((p, p), (p, p), (0, 0)))
                top, left = np.random.randint(0, 2 * p + 1, size=2)
                out = padded[top:top + size[0], left:left + size[1]]
        if self.flip and np.random.rand() < 0.5:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def views(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        """The requested views of an already augmented uint8 image."""
        out = {}
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:  # e.g. a memory map or a decoder's buffer: torch wants its own copy
            image = image.copy()
        if "image" in self.keys:
            x = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
            out["image"] = (x - torch.tensor(self.mean).view(3, 1, 1)) / torch.tensor(self.std).view(3, 1, 1)
        if "L" in self.keys or "ab" in self.keys:
            L, ab = normalize_lab(rgb_to_lab(image), self.lab_mean, self.lab_std)
            if "L" in self.keys:
                out["L"] = L
            if "ab" in self.keys:
                out["ab"] = ab
        return {k: out[k] for k in self.keys}

    def __call__(self, image: np.ndarray) -> dict[str, torch.Tensor]:
        return self.views(self.geometry(image))

    def __repr__(self) -> str:
        how = f"crop={self.crop!r}" if self.augment else "no augmentation"
        return f"ImageViews(keys={self.keys}, size={self.size}, {how})"
