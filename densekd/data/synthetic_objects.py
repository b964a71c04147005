"""Class-conditional object pictures for the synthetic STL-10 and TinyImageNet stand-ins.

Each class owns an appearance: a silhouette (disc, square, diamond, ring, cross, triangle, bar), a hue, and a
stripe texture (orientation and frequency). A picture is one object of its class at a random place, size and
rotation, on a smooth background of random low-saturation colour, with lighting jitter and noise. The class
shows both in lightness (silhouette, texture) and in chromaticity (hue): a network reading only the ``L`` view
and one reading only the ``ab`` view can both learn it, which is what the L -> ab transfer needs. A fraction of
pictures can be greyscale (R = G = B; TinyImageNet has such images). ``colour_cue`` below 1 gives only that
fraction of the objects their class's hue and the others a uniformly random one: the class then shows in the ``ab``
view mostly through the object's shape and texture (its chroma against the grey-ish background), as in real
photographs, where chrominance follows the edges of what lightness shows.

Pictures depend only on ``(seed, stream, index)``, never on the global RNG.
"""
from __future__ import annotations

import zlib

import numpy as np

SHAPES = ("disc", "square", "diamond", "ring", "cross", "triangle", "bar")


def stream_seed(name: str) -> int:
    """A stable integer for a stream name (a split, a file part)."""
    return zlib.crc32(name.encode())


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (each in [0, 1]) -> RGB float in [0, 1], stacked on a last axis."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(np.broadcast(h, s, v).shape + (3,))
    for k, (r, g, b) in enumerate(table):
        m = i == k
        for c, val in enumerate((r, g, b)):
            out[..., c] = np.where(m, val, out[..., c])
    return out


def _mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r = np.sqrt(u * u + v * v)
    if shape == 0:
        return r < 1.0
    if shape == 1:
        return np.maximum(np.abs(u), np.abs(v)) < 0.8
    if shape == 2:
        return np.abs(u) + np.abs(v) < 1.0
    if shape == 3:
        return (r > 0.55) & (r < 1.0)
    if shape == 4:
        return ((np.abs(u) < 0.33) & (np.abs(v) < 1.0)) | ((np.abs(v) < 0.33) & (np.abs(u) < 1.0))
    if shape == 5:
        return (v < 0.8) & (np.abs(u) < (v + 0.95) * 0.55)
    return (u / 1.0) ** 2 + (v / 0.42) ** 2 < 1.0


class ObjectClasses:
    """The appearance of ``num_classes`` classes and a renderer of their pictures.

    Classes get distinct hues (evenly spaced, shuffled) and silhouettes in turn, and random texture
    orientations and frequencies, all from ``seed``.
    """

    def __init__(self, num_classes: int, seed: int = 0):
        rng = np.random.default_rng([seed, 17])
        self.num_classes = int(num_classes)
        self.hue = (np.arange(num_classes) / num_classes + rng.uniform()) % 1.0
        rng.shuffle(self.hue)
        self.shape = np.arange(num_classes) % len(SHAPES)
        rng.shuffle(self.shape)
        self.angle = rng.uniform(0, np.pi, num_classes)
        self.freq = rng.uniform(2.0, 6.0, num_classes)  # stripe periods across the object's radius
        self.seed = int(seed)

    def render(self, cls: int, rng: np.random.Generator, size: int, grey: bool = False,
               hue: float | None = None) -> np.ndarray:
        """One ``size x size x 3`` uint8 picture of class ``cls`` (its object in hue ``hue`` instead of the class's
        when given)."""
        yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size  # in [0, 1]
        # background: low-saturation colour with a linear light gradient
        bh, bs, bv = rng.uniform(), rng.uniform(0.0, 0.25), rng.uniform(0.25, 0.75)
        gx, gy = rng.uniform(-0.25, 0.25, 2)
        value = np.clip(bv + gx * (xx - 0.5) + gy * (yy - 0.5), 0, 1)
        img = hsv_to_rgb(np.full_like(xx, bh), np.full_like(xx, bs), value)
        # the object: silhouette, class hue, class stripes
        cx, cy = rng.uniform(0.32, 0.68, 2)
        radius = rng.uniform(0.22, 0.36)
        rot = rng.uniform(-0.5, 0.5)
        dx, dy = (xx - cx) / radius, (yy - cy) / radius
        u = np.cos(rot) * dx + np.sin(rot) * dy
        v = -np.sin(rot) * dx + np.cos(rot) * dy
        mask = _mask(int(self.shape[cls]), u, v)
        a = self.angle[cls]
        stripes = 0.5 + 0.5 * np.sin(np.pi * self.freq[cls] * (np.cos(a) * dx + np.sin(a) * dy)
                                     + rng.uniform(0, 2 * np.pi))
        oh = (self.hue[cls] if hue is None else hue) + rng.uniform(-0.02, 0.02)
        os_, ov = rng.uniform(0.6, 0.95), rng.uniform(0.55, 0.95)
        obj = hsv_to_rgb(np.full_like(xx, oh), np.full_like(xx, os_), ov * (0.45 + 0.55 * stripes))
        img = np.where(mask[..., None], obj, img) * 255.0
        img = img + rng.normal(0, 6.0, img.shape)
        if grey:
            img = np.repeat(img @ np.array([[0.299], [0.587], [0.114]]), 3, axis=2)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)

    def picture(self, cls: int, stream: str, index: int, size: int, grey_fraction: float = 0.0,
                colour_cue: float = 1.0) -> np.ndarray:
        """The deterministic picture ``index`` of stream ``stream`` (class ``cls``); with ``colour_cue < 1`` the
        object has its class's hue with that probability, else a uniformly random hue (drawn from a stream of its
        own, so the rest of the picture is the same as with ``colour_cue=1``)."""
        rng = np.random.default_rng([self.seed, stream_seed(stream), int(index)])
        grey = grey_fraction > 0 and rng.uniform() < grey_fraction
        hue = None
        if colour_cue < 1:
            cue = np.random.default_rng([self.seed, stream_seed(stream), int(index), stream_seed("hue")])
            if cue.uniform() >= colour_cue:
                hue = float(cue.uniform())
        return self.render(int(cls), rng, size, grey=grey, hue=hue)


def balanced_labels(n: int, num_classes: int, seed: int, stream: str) -> np.ndarray:
    """``n`` labels with every class as often as possible (``arange(n) % C``), shuffled per stream."""
    labels = np.arange(n, dtype=np.int64) % num_classes
    np.random.default_rng([seed, stream_seed(stream), 1]).shuffle(labels)
    return labels
