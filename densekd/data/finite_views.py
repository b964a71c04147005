"""Datasets whose random augmentation takes one of finitely many values: the view protocol.

A dataset that takes part (and can then be served from an offline teacher cache, :mod:`densekd.data.teacher_cache`)
provides

* ``num_views`` (int >= 1): every item it returns is one of ``num_views`` deterministic renderings ("views") of its
  sample -- 1 for a dataset without augmentation;
* an int ``'view'`` entry in every item (``0 <= view < num_views``): which rendering the item is;
* ``view_item(index, view) -> dict``: that rendering, drawing from no RNG; equal, entry for entry, to the item the
  loader gave whose ``'view'`` it is.

The draw of the view is the dataset's own augmentation, made from the global RNGs the loader seeds per sample
(:class:`~densekd.data.sampling.SeededDataset`), so adding the ``'view'`` entry changes no augmentation. CIFAR's
standard augmentation (a 32 x 32 crop of the 4-padded image, then a horizontal flip with p = 0.5) has
``9 x 9 x 2 = 162`` views, numbered ``view = (top * 9 + left) * 2 + flip`` (:func:`crop_flip`). A random rescale and
crop (Cityscapes, ImageNet's RandomResizedCrop) or RandAugment has no finite view set and so no protocol: such a
dataset cannot be cached (:func:`view_dataset` says so in one line).
"""
from __future__ import annotations

import numpy as np


def crop_flip_views(padding: int, flip: bool = True) -> int:
    """The number of views of a ``padding``-padded crop back to the image size (one offset when ``padding`` is
    0), then a flip when ``flip``."""
    return (2 * padding + 1) ** 2 * (2 if flip else 1)


def draw_crop_flip(padding: int, flip: bool = True) -> int:
    """The view of a random crop + flip, drawn from NumPy's global RNG exactly as CIFAR's augmentation always did:
    ``top, left = np.random.randint(0, 2 * padding + 1, size=2)`` (when ``padding > 0``), then ``flip =
    np.random.rand() < 0.5`` (when ``flip``); nothing is drawn for a part that is off."""
    top, left = np.random.randint(0, 2 * padding + 1, size=2) if padding > 0 else (0, 0)
    offset = int(top) * (2 * padding + 1) + int(left)
    return offset * 2 + int(np.random.rand() < 0.5) if flip else offset


def crop_flip(image: np.ndarray, view: int, padding: int, flip: bool = True) -> np.ndarray:
    """View ``view`` of an ``H x W x C`` image: the crop at ``(top, left)`` of the zero-padded image, then a
    horizontal flip when its bit is set, where ``view = (top * (2 * padding + 1) + left) * 2 + flip`` (without
    ``flip``: ``view = top * (2 * padding + 1) + left``)."""
    n = crop_flip_views(padding, flip)
    if not 0 <= int(view) < n:
        raise ValueError(f"view {view} is outside 0..{n - 1} (the crop offsets x flips of padding {padding})")
    offset, flipped = divmod(int(view), 2) if flip else (int(view), 0)
    top, left = divmod(offset, 2 * padding + 1)
    h, w = image.shape[:2]
    if padding > 0:
        padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
        image = padded[top:top + h, left:left + w]
    return image[:, ::-1] if flipped else image


class NoFiniteViews(ValueError):
    """The dataset's items are not drawn from a finite set of views, so its teacher outputs cannot be cached."""


def view_dataset(dataset):
    """The dataset of the chain ``dataset``, ``dataset.dataset``, ... that implements the view protocol (the one whose
    items carry ``'view'``); :class:`NoFiniteViews` naming the chain when none does."""
    chain, node = [], dataset
    while node is not None and len(chain) < 16:
        chain.append(type(node).__name__)
        if "num_views" in dir(type(node)) and callable(getattr(type(node), "view_item", None)):
            return node
        node = getattr(node, "__dict__", {}).get("dataset")
    raise NoFiniteViews(f"{' -> '.join(chain)} does not draw its samples from a finite set of views (no num_views / "
                        f"view_item; a random rescale-crop or RandAugment has none), so a teacher cache cannot hold "
                        f"its teacher outputs; train with the live teacher (remove teacher_cache)")
