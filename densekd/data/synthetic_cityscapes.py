"""Procedural stand-in for Cityscapes: street scenes with the 19 train ids and ignore 255.

:class:`SyntheticCityscapes` draws each sample from a numpy Generator seeded by (split, index) and returns it
in :class:`~densekd.data.cityscapes.Cityscapes`' sample format; :meth:`SyntheticCityscapes.write_tree` writes
samples in the official on-disk layout (to exercise the real loader). The label table, class names, palette
and transforms are the real loader's (:mod:`densekd.data.cityscapes`).
"""
from __future__ import annotations

import functools
import os
import zlib
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.data.cityscapes import (CLASSES, IGNORE, LABEL_TABLE, PALETTE, CityscapesResults, _make_transform,
                                     _write_png, train_id_lut)
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.registry import DATASETS

# Appearance base colours (RGB) per train id. Deliberately *not* the palette: some groups share colours and
# differ only by texture (building/wall, vegetation/terrain, road/sidewalk), size/shape (truck/bus/train) or
# context (rider = a person on a two-wheeler), so that capacity and receptive field pay off.
_APPEARANCE = np.array([
    (128, 70, 128),   # road
    (140, 85, 140),   # sidewalk: road-like, tiled
    (95, 95, 100),    # building: windows
    (105, 100, 100),  # wall: bricks
    (150, 130, 115),  # fence: lattice
    (160, 160, 160),  # pole
    (35, 35, 35),     # traffic light (lamp drawn on top)
    (215, 205, 20),   # traffic sign
    (70, 125, 40),    # vegetation: rough
    (100, 140, 60),   # terrain: smooth blotches
    (110, 160, 220),  # sky
    (190, 60, 80),    # person
    (190, 60, 80),    # rider: same look as person
    (25, 35, 150),    # car
    (40, 50, 120),    # truck
    (35, 75, 115),    # bus
    (35, 85, 105),    # train
    (50, 40, 190),    # motorcycle
    (130, 25, 45),    # bicycle
    (60, 60, 60),     # ignore (index 19)
], dtype=np.float32)

_IGNORE_SLOT = 19
# non-train label ids, used by ``write_tree`` to encode ignore pixels with a mix of official ids
_VOID_IDS = np.array([lid for _n, lid, tid in LABEL_TABLE if lid >= 0 and tid == 255], dtype=np.uint8)
_TRAIN_TO_ID = train_id_lut()
CITIES = ("synthcity", "faketown")


def synthetic_id(index: int, cities: Sequence[str] = CITIES) -> str:
    """The Cityscapes-style id of synthetic sample ``index``: ``<city>_<index:06d>_000019`` (what
    :meth:`SyntheticCityscapes.write_tree` names its files)."""
    return f"{cities[index % len(cities)]}_{index:06d}_000019"


@functools.lru_cache(maxsize=8)
def _texture_bank(h: int, w: int) -> np.ndarray:
    """Fixed, cached (20 x 2h x 2w luminance textures, one per class + ignore; 2h x 2w x 3 pixel noise)."""
    rng = np.random.default_rng(12345)
    H, W = 2 * h, 2 * w
    yy, xx = np.mgrid[0:H, 0:W]
    bank = np.zeros((20, H, W), dtype=np.float32)

    def smooth(cells_y: int, cells_x: int) -> np.ndarray:
        small = rng.uniform(-1, 1, (cells_y + 1, cells_x + 1)).astype(np.float32)
        ry = np.minimum(yy * cells_y // H, cells_y - 1)
        rx = np.minimum(xx * cells_x // W, cells_x - 1)
        fy = (yy * cells_y / H - ry).astype(np.float32)
        fx = (xx * cells_x / W - rx).astype(np.float32)
        a, b = small[ry, rx], small[ry, rx + 1]
        c, d = small[ry + 1, rx], small[ry + 1, rx + 1]
        return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy

    bank[0] = rng.uniform(-8, 8, (H, W))                                        # road: fine grain
    bank[1] = np.where((yy % 5 == 0) | (xx % 6 == 0), -30.0, 6.0)               # sidewalk: tiles
    bank[2] = np.where((yy % 6 < 3) & (xx % 5 < 3), -35.0, 10.0)                # building: windows
    brick = (yy % 4 == 0) | (((xx + 4 * ((yy // 4) % 2)) % 8) == 0)
    bank[3] = np.where(brick, -25.0, 5.0)                                       # wall: bricks
    bank[4] = np.where(((xx + yy) % 4 == 0) | ((xx - yy) % 4 == 0), 45.0, -20.0)  # fence: lattice
    veg = rng.uniform(-1, 1, (H // 2 + 1, W // 2 + 1)).repeat(2, 0).repeat(2, 1)[:H, :W]
    bank[8] = 35.0 * veg                                                        # vegetation: rough leaves
    bank[9] = 22.0 * smooth(max(H // 8, 1), max(W // 8, 1))                     # terrain: blotches
    bank[10] = 12.0 * smooth(max(H // 16, 1), max(W // 16, 1))                  # sky: clouds
    bank[11] = np.where((yy % 3 == 0), -12.0, 4.0)                              # person clothing
    bank[12] = bank[11]                                                         # rider: same
    bank[14] = np.where(xx % 3 == 0, -22.0, 4.0)                                # truck: ribs
    bank[16] = np.where(yy % 4 == 0, 30.0, -4.0)                                # train: stripes
    bank[17] = np.where((xx + yy) % 2 == 0, 10.0, -10.0)                        # motorcycle: sheen
    bank[_IGNORE_SLOT] = rng.uniform(-30, 30, (H, W))
    noise = (rng.standard_normal((H, W, 3)) * 7.0).astype(np.float32)  # pixel noise, sliced at random offsets
    return bank, noise


class _Canvas:
    """Label / instance / shade maps plus per-instance colours for one procedural scene."""

    def __init__(self, rng: np.random.Generator, h: int, w: int):
        self.rng, self.h, self.w = rng, h, w
        self.label = np.full((h, w), 10, dtype=np.uint8)
        self.inst = np.zeros((h, w), dtype=np.int32)
        self.shade = np.ones((h, w), dtype=np.float32)
        self.colors = [_APPEARANCE[10] + rng.uniform(-20, 20, 3)]

    def new(self, cls: int, jitter: float = 18.0, color=None) -> int:
        base = _APPEARANCE[_IGNORE_SLOT if cls == IGNORE else cls] if color is None else np.asarray(color, np.float32)
        self.colors.append(base + self.rng.uniform(-jitter, jitter, 3))
        return len(self.colors) - 1

    def _clip(self, y0, y1, x0, x1):
        y0, y1 = max(int(y0), 0), min(int(y1), self.h)
        x0, x1 = max(int(x0), 0), min(int(x1), self.w)
        return y0, y1, x0, x1

    def rect(self, y0, y1, x0, x1, cls: int, iid: int | None = None, shade: float | None = None) -> int:
        iid = self.new(cls) if iid is None else iid
        y0, y1, x0, x1 = self._clip(y0, y1, x0, x1)
        if y1 > y0 and x1 > x0:
            self.label[y0:y1, x0:x1] = cls
            self.inst[y0:y1, x0:x1] = iid
            self.shade[y0:y1, x0:x1] = 1.0 if shade is None else shade
        return iid

    def shade_rect(self, y0, y1, x0, x1, value: float) -> None:
        y0, y1, x0, x1 = self._clip(y0, y1, x0, x1)
        if y1 > y0 and x1 > x0:
            self.shade[y0:y1, x0:x1] = value

    def ellipse(self, cy, cx, ry, rx, cls: int, iid: int | None = None, ring: float | None = None) -> int:
        """Filled ellipse, or a ring of thickness ``ring`` (pixels) when given."""
        iid = self.new(cls) if iid is None else iid
        y0, y1, x0, x1 = self._clip(cy - ry - 1, cy + ry + 2, cx - rx - 1, cx + rx + 2)
        if y1 <= y0 or x1 <= x0:
            return iid
        yy, xx = np.ogrid[y0:y1, x0:x1]
        d = ((yy - cy) / max(ry, 0.5)) ** 2 + ((xx - cx) / max(rx, 0.5)) ** 2
        m = d <= 1.0
        if ring is not None:
            inner = ((yy - cy) / max(ry - ring, 0.3)) ** 2 + ((xx - cx) / max(rx - ring, 0.3)) ** 2
            m &= inner > 1.0
        self.label[y0:y1, x0:x1][m] = cls
        self.inst[y0:y1, x0:x1][m] = iid
        self.shade[y0:y1, x0:x1][m] = 1.0
        return iid


def _draw_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One street scene: (H x W x 3 uint8 image, H x W uint8 train ids with 255 ignore, H x W instance ids)."""
    cv = _Canvas(rng, h, w)
    u = rng.uniform
    horizon = int(h * u(0.42, 0.56))

    # skyline: buildings, trees, low walls, gaps of sky
    x = 0
    while x < w:
        bw = int(rng.integers(max(w // 14, 3), max(w // 4, 5)))
        kind = rng.choice(4, p=[0.5, 0.3, 0.1, 0.1])
        if kind == 0:
            cv.rect(int(u(0.03, 0.75) * horizon), horizon, x, x + bw, 2)
        elif kind == 1:
            top = int(u(0.1, 0.7) * horizon)
            iid = cv.new(8)
            ry = (horizon - top) / 2 + 1
            cv.ellipse(top + ry, x + bw / 2, ry, bw / 2 + 1, 8, iid)
            cv.rect(horizon - max(h // 20, 1), horizon, x + bw // 2 - 1, x + bw // 2 + 1, 8, iid)  # trunk
        elif kind == 2:
            cv.rect(horizon - int(u(0.08, 0.18) * h), horizon, x, x + bw, 3)
        x += bw

    # ground: road trapezoid towards a vanishing point, sidewalks, terrain
    rows = h - horizon
    vx = w / 2 + u(-0.15, 0.15) * w
    spread, walk = u(0.45, 0.75) * w, u(0.06, 0.14) * w
    yy, xx = np.ogrid[horizon:h, 0:w]
    t = (yy - horizon + 1) / rows
    half = 0.03 * w + t * spread
    side_w = 1 + t * walk
    dist = np.abs(xx - vx)
    left = xx < vx
    ground = np.where(dist < half, 0, np.where(dist < half + side_w, 1, 9)).astype(np.uint8)
    outer_walk = rng.random(2) < 0.5  # per side: sidewalk continues instead of terrain
    ground[(ground == 9) & ((left & outer_walk[0]) | (~left & outer_walk[1]))] = 1
    g_ids = np.zeros(10, dtype=np.int32)
    for c in (0, 1, 9):
        g_ids[c] = cv.new(c)
    cv.label[horizon:] = ground
    cv.inst[horizon:] = g_ids[ground]
    lane = (dist < 0.6 + t * 1.2) & ((yy // max(h // 24, 2)) % 2 == 0)  # dashed marking, still road
    cv.shade[horizon:][lane & (ground == 0)] = 1.7

    def road_half(y):
        return 0.03 * w + (y - horizon + 1) / rows * spread

    # fences / walls along the horizon on the sides
    for _ in range(int(rng.integers(0, 3))):
        fx0 = int(u(0, 0.8) * w)
        fh = int(u(0.06, 0.14) * h) + 2
        cls = 4 if rng.random() < 0.6 else 3
        cv.rect(horizon - fh, horizon + 1, fx0, fx0 + int(u(0.1, 0.3) * w), cls)

    # poles with traffic lights / signs
    for _ in range(int(rng.integers(0, 4))):
        yb = int(u(horizon + 2, h - 2))
        side = 1 if rng.random() < 0.5 else -1
        px = int(np.clip(vx + side * (road_half(yb) + u(1, 4)), 0, w - 2))
        top = int(u(0.08, 0.6) * horizon)
        pw = 1 if w < 200 or rng.random() < 0.5 else 2
        cv.rect(top, yb, px, px + pw, 5)
        r = rng.random()
        bh = max(h // 14, 3)
        if r < 0.45:
            ox = px - 1 if side > 0 else px
            cv.rect(top, top + bh, ox, ox + 3, 6)
            lamp = cv.new(6, jitter=10, color=[(230, 40, 30), (40, 220, 60), (240, 200, 30)][rng.integers(3)])
            ly = top + int(rng.integers(0, bh))
            cv.rect(ly, ly + 1, ox + 1, ox + 2, 6, lamp)
        elif r < 0.85:
            sw = max(w // 28, 3)
            color = None if rng.random() < 0.6 else (40, 70, 200)
            cv.rect(top, top + sw, px - sw // 2, px - sw // 2 + sw, 7, cv.new(7, color=color))

    # vehicles on the road, far to near (painter's order)
    n_veh = int(rng.integers(0, 5))
    kinds = rng.choice(6, size=n_veh, p=[0.36, 0.1, 0.1, 0.06, 0.18, 0.2])
    bottoms = np.sort(rng.uniform(horizon + 3, h + h * 0.15, size=n_veh))
    for kind, yb in zip(kinds, bottoms):
        yb = int(yb)
        s = 0.12 + 0.88 * min((yb - horizon) / rows, 1.2)
        cx = vx + u(-0.8, 0.8) * road_half(min(yb, h - 1))
        if kind == 0:  # car: body, windows, wheels
            cw = max(w * 0.22 * s, 4)
            ch = cw * 0.55
            x0, y0 = cx - cw / 2, yb - ch
            cv.rect(y0, yb, x0, x0 + cw, 13)
            cv.shade_rect(y0 + ch * 0.12, y0 + ch * 0.45, x0 + cw * 0.12, x0 + cw * 0.88, 0.45)
            cv.shade_rect(yb - ch * 0.2, yb, x0 + cw * 0.1, x0 + cw * 0.3, 0.25)
            cv.shade_rect(yb - ch * 0.2, yb, x0 + cw * 0.7, x0 + cw * 0.9, 0.25)
        elif kind == 1:  # truck: cabin + tall cargo box
            cw = max(w * 0.3 * s, 5)
            ch = cw * 0.85
            x0 = cx - cw / 2
            iid = cv.rect(yb - ch, yb, x0, x0 + cw * 0.72, 14)
            cv.rect(yb - ch * 0.6, yb, x0 + cw * 0.72, x0 + cw, 14, iid)
            cv.shade_rect(yb - ch * 0.55, yb - ch * 0.35, x0 + cw * 0.78, x0 + cw * 0.95, 0.5)
        elif kind == 2:  # bus: long, a row of windows
            cw = max(w * 0.45 * s, 6)
            ch = cw * 0.45
            x0, y0 = cx - cw / 2, yb - ch
            cv.rect(y0, yb, x0, x0 + cw, 15)
            ys0, ys1, xs0, xs1 = cv._clip(y0 + ch * 0.15, y0 + ch * 0.45, x0 + 1, x0 + cw - 1)
            if ys1 > ys0 and xs1 > xs0:
                cols = np.arange(xs0, xs1)
                win = (cols - xs0) % 5 < 3
                cv.shade[ys0:ys1, cols[win]] = 0.5
        elif kind == 3:  # train: very long, low, striped
            cw = max(w * 0.8 * s, 8)
            ch = cw * 0.22
            cv.rect(yb - ch, yb, cx - cw / 2, cx + cw / 2, 16)
        else:  # two-wheelers, usually with a rider on top
            cw = max(w * 0.09 * s, 3)
            ch = cw * 0.8
            x0 = cx - cw / 2
            if kind == 4:
                cv.rect(yb - ch, yb, x0, x0 + cw, 17)
            else:
                iid = cv.new(18)
                r = max(ch * 0.35, 1.0)
                cv.ellipse(yb - r, x0 + r, r, r, 18, iid, ring=1.0)
                cv.ellipse(yb - r, x0 + cw - r, r, r, 18, iid, ring=1.0)
                cv.rect(yb - r - 1, yb - r, x0 + r, x0 + cw - r, 18, iid)
            if rng.random() < 0.8:  # rider: looks like a pedestrian, but sits on a two-wheeler
                _person(cv, yb - ch * 0.7, cx, ch * 1.6, max(cw * 0.45, 1.5), 12)

    # pedestrians on the sidewalks / terrain
    for _ in range(int(rng.integers(0, 5))):
        yb = u(horizon + 2, h + 2)
        s = 0.12 + 0.88 * (yb - horizon) / rows
        side = 1 if rng.random() < 0.5 else -1
        cx = vx + side * (road_half(min(yb, h - 1)) + u(0.5, 6) + s * 4)
        ph = max(h * 0.32 * s, 4)
        _person(cv, yb, cx, ph, max(ph * 0.3, 1.5), 11)

    # ignore regions: ego-vehicle hood, unlabelled static clutter
    if rng.random() < 0.35:
        hood = int(u(0.05, 0.12) * h) + 1
        cv.ellipse(h + hood * 0.5, w / 2, hood * 1.5, w * 0.7, IGNORE, cv.new(IGNORE, color=(30, 30, 35)))
    if rng.random() < 0.3:
        sy, sx = u(horizon, h), u(0, w)
        sh, sw = u(0.04, 0.1) * h + 1, u(0.03, 0.1) * w + 1
        cv.rect(sy - sh, sy, sx, sx + sw, IGNORE, cv.new(IGNORE, jitter=50, color=(120, 110, 100)))

    # render: instance colour x shade + class texture + noise, global gain
    colors = np.asarray(cv.colors, dtype=np.float32)
    slot = np.where(cv.label == IGNORE, _IGNORE_SLOT, cv.label).astype(np.intp)
    bank, bank_noise = _texture_bank(h, w)
    dy, dx = int(rng.integers(0, h)), int(rng.integers(0, w))
    tex = bank[slot, np.arange(dy, dy + h)[:, None], np.arange(dx, dx + w)[None, :]]
    img = colors[cv.inst] * cv.shade[:, :, None]
    img += tex[:, :, None]
    img *= u(0.75, 1.2)
    ny, nx = int(rng.integers(0, h)), int(rng.integers(0, w))
    img += bank_noise[ny:ny + h, nx:nx + w]
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8), cv.label, cv.inst


def _person(cv: _Canvas, yb: float, cx: float, ph: float, pw: float, cls: int) -> None:
    """Torso, legs and a head; the class (person 11 / rider 12) is the caller's."""
    iid = cv.new(cls, jitter=40)
    top = yb - ph
    cv.rect(top + ph * 0.2, yb - ph * 0.35, cx - pw / 2, cx + pw / 2, cls, iid)
    cv.rect(yb - ph * 0.35, yb, cx - pw / 2, cx - pw / 2 + max(pw * 0.4, 1), cls, iid, shade=0.6)
    cv.rect(yb - ph * 0.35, yb, cx + pw / 2 - max(pw * 0.4, 1), cx + pw / 2, cls, iid, shade=0.6)
    head = cv.new(cls, jitter=15, color=(225, 180, 150))
    cv.rect(top, top + ph * 0.2 + 1, cx - pw * 0.3, cx + pw * 0.3 + 1, cls, head)


# Look-alike classes an annotator confuses (label_noise): each object of a key class is, with probability
# label_noise, labelled as one of its look-alikes (chosen uniformly). Road / sidewalk / sky / pole are not
# confused (they are one large region each, or too thin to misjudge).
_LOOKALIKES = {2: (3,), 3: (2, 4), 4: (3,), 6: (7,), 7: (6,), 8: (9,), 9: (8,), 11: (12,), 12: (11,),
               13: (14,), 14: (13, 15), 15: (14, 16), 16: (15,), 17: (18,), 18: (17,)}


def _annotation_noise(label: np.ndarray, inst: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Relabel whole objects as their look-alikes with probability ``p`` each (see ``_LOOKALIKES``)."""
    out = label.copy()
    ids = np.unique(inst)
    flips = rng.random(len(ids)) < p
    picks = rng.random(len(ids))
    for iid, flip, pick in zip(ids, flips, picks):
        if not flip:
            continue
        m = inst == iid
        cls = int(label[m][0])
        alts = _LOOKALIKES.get(cls)
        if alts:
            out[m & (label == cls)] = alts[int(pick * len(alts))]
    return out


def _sample_seed(split: str, index: int) -> int:
    return zlib.crc32(f"SyntheticCityscapes/{split}/{index}".encode())


@DATASETS.register()
class SyntheticCityscapes(CityscapesResults, Dataset):
    """Procedural stand-in for :class:`~densekd.data.cityscapes.Cityscapes`: same 19 classes, ignore 255 and
    sample format.

    Each sample is a street scene drawn from a numpy Generator seeded by (split, index) -- independent of the
    global RNG (only augmentation uses that): sky, buildings (window texture), walls (bricks), trees
    (rough green), terrain (smooth green), a perspective road with lane marks, sidewalks (tiles), fences
    (lattice), thin poles with traffic lights / signs, cars, trucks, buses, trains, motorcycles, bicycles
    (thin rings), pedestrians and riders (riders look like pedestrians; only the two-wheeler below tells
    them apart), plus ignore regions (ego-vehicle hood, clutter). Classes that share colours differ by
    texture, size or context, so larger networks do better.

    Sample: ``{'image': 3 x H x W float (normalised), 'target': H x W long}``, H x W = ``image_size``
    (64 x 128 default) for evaluation, ``min(crop_size, image_size)`` for training with augmentation.

    Args: as :class:`~densekd.data.cityscapes.Cityscapes` (``root`` is accepted and ignored, so a config's dataset
    dict can be re-typed), plus ``num_samples`` (default 200 for train, 50 otherwise), ``image_size`` and
    ``label_noise`` (default 0: exact labels). ``label_noise=p`` imitates annotator confusions: every object of a
    class with a look-alike (building/wall/fence, vegetation/terrain, traffic light/sign, person/rider,
    car/truck/bus/train, motorcycle/bicycle) is labelled as a look-alike with probability ``p``, whole objects at a
    time, from an RNG seeded by (split, index); the image is unchanged. The demo sets it on its training split only.
    """

    load_keys = ('image', 'label')  # what load(index) returns, in order

    CLASSES = CLASSES
    PALETTE = PALETTE
    class_names = list(CLASSES)  # the real dataset's metadata (see Cityscapes)
    palette = list(PALETTE)
    num_classes = len(CLASSES)
    DEFAULT_SIZES = {"train": 200}
    DEFAULT_OTHER = 50

    def __init__(self, root: str | None = None, split: str = "train", num_samples: int | None = None,
                 image_size: Sequence[int] | int = (64, 128), crop_size: Sequence[int] | int | None = (512, 1024),
                 scale_range: Sequence[float] | None = (0.5, 2.0), flip: bool = True, photometric: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 ignore_index: int = IGNORE, augment: bool | None = None, label_noise: float = 0.0):
        self.root = root
        self.split = split
        if not 0.0 <= float(label_noise) < 0.5:
            raise ValueError(f"label_noise is the probability that an object is labelled as its look-alike; it must "
                             f"be in [0, 0.5) (at 0.5 the true class is no longer the most likely label); got "
                             f"{label_noise!r}")
        self.label_noise = float(label_noise)
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(int(s) for s in image_size)
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"image_size must be (height, width) with both >= 16; got {image_size!r}")
        n = self.DEFAULT_SIZES.get(split, self.DEFAULT_OTHER) if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples!r}")
        self.num_samples = n
        self.ignore_index = int(ignore_index)
        if crop_size is not None:
            if isinstance(crop_size, int):
                crop_size = (crop_size, crop_size)
            # a crop meant for 1024 x 2048 frames is clamped to the small synthetic frame
            crop_size = (min(int(crop_size[0]), self.image_size[0]), min(int(crop_size[1]), self.image_size[1]))
        self.crop_size = crop_size
        augment = split == "train" if augment is None else bool(augment)
        self.augment = augment
        self.transform = _make_transform(augment, crop_size, scale_range, flip, photometric, mean, std,
                                         self.ignore_index)

    def __len__(self) -> int:
        return self.num_samples

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw sample ``index``: (H x W x 3 uint8 RGB, H x W uint8 train ids, ignore = ``ignore_index``)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticCityscapes index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng(_sample_seed(self.split, index))
        image, label, inst = _draw_scene(rng, *self.image_size)
        if self.label_noise > 0:
            label = _annotation_noise(label, inst, self.label_noise,
                                      np.random.default_rng(_sample_seed(self.split + "/noise", index)))
        if self.ignore_index != IGNORE:
            label = np.where(label == IGNORE, self.ignore_index, label).astype(np.uint8)
        return image, label

    load = render

    def sample_id(self, index: int) -> str:
        """``<city>_<index:06d>_000019`` (:func:`synthetic_id`), the name :meth:`write_tree` gives the sample."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"SyntheticCityscapes index {index} out of range for {self.num_samples} samples")
        return synthetic_id(index)

    def __getitem__(self, index: int) -> dict:
        image, label = self.render(index)
        return self.transform(image, label)

    @classmethod
    def write_tree(cls, root: str, split: str = "train", n: int = 8, image_size: Sequence[int] = (64, 128),
                   cities: Sequence[str] = CITIES) -> list[str]:
        """Write ``n`` samples of ``split`` to ``root`` in the official Cityscapes layout; returns image paths.

        Train ids are written back as official label ids; ignore pixels get a mix of void ids (unlabeled,
        ego vehicle, static, parking, guard rail...) so that loading exercises the whole label table.
        """
        ds = cls(split=split, num_samples=n, image_size=image_size, augment=False)
        paths = []
        for i in range(n):
            image, label = ds.render(i)
            ids = _TRAIN_TO_ID[label]
            void = label == IGNORE
            if void.any():
                pick = (np.arange(label.size).reshape(label.shape) // 7) % len(_VOID_IDS)
                ids[void] = _VOID_IDS[pick[void]]
            stem = synthetic_id(i, cities)
            city = stem.split("_")[0]
            img_path = os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png")
            _write_png(img_path, image)
            _write_png(os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_labelIds.png"), ids)
            paths.append(img_path)
        return paths

    def __repr__(self) -> str:
        return (f"SyntheticCityscapes(split={self.split!r}, n={self.num_samples}, image_size={self.image_size}, "
                f"augment={self.augment})")
