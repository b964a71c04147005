"""Procedural indoor rooms in the NYU-Depth v2 formats, and writers of the real file formats.

:func:`render_room` ray-casts a room seen by a pinhole camera (NYU's focal 518.86 px at 640 px width, scaled to
the frame): floor, ceiling and walls are planes of a box room, furniture (beds, sofas, tables and chairs with
legs, cabinets, dressers, bookshelves, counters, desks, refrigerators, toilets, bathtubs...) are boxes standing
on the floor, wall objects (windows, pictures, doors, whiteboards, mirrors, blinds, curtains, shelves) thin boxes
on the walls, props (boxes, books, lamps, televisions, pillows, bags...) stand on furniture tops. Depth is the
camera-frame z of the first hit (metres, about 0.5-8 m). Each region carries an NYU-40 train id.

What makes the pipelines' mechanisms visible on CPU:

* RGB predicts depth: surfaces are lit by a light at the camera (Lambertian, falling off with distance) and a
  ceiling lamp, with a faint haze, and textured in *world* units (floor planks / tiles, wallpaper stripes,
  ceiling panels), so texture frequency grows and brightness drops with depth.
* Classes are partly predictable from depth geometry alone: floor, ceiling and walls are planes whose depth
  changes along image rows in opposite ways; furniture has class-typical heights and sizes.
* Kinect-like missing depth in ``raw_depth`` (0): glass and mirrors, a band at the image borders, shadows
  beside depth discontinuities, speckle at long range -- while ``depth`` is complete, like the labeled set's
  in-painted ``depths`` vs its ``rawDepths``.
* A few percent of pixels unlabeled (255): unlabeled clutter and part of the object boundaries.

:class:`SyntheticNYUDepthV2` / :class:`SyntheticNYUDepthRaw` take the real loaders' arguments (``root`` and the
file names are accepted and ignored) plus ``num_samples`` and ``size``; samples are deterministic per
(split or file list, index). The writers (:func:`write_labeled_mat`, :func:`write_splits_mat`,
:func:`write_mapping_mat`, :func:`write_raw_tree`) produce the real on-disk formats.
"""
from __future__ import annotations

import os
import zlib
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.data.hha import depth_to_hha, write_hha
from densekd.data.nyu import (CLASSES13, CLASSES40, HHA_PATTERN, IGNORE, MAP40_TO_13, NUM_RAW_CLASSES, NYU_FOCAL,
                              NYU_FRAME, PALETTE13, PALETTE40, NYUResults, NYUTransform, _check_target, hha_path,
                              label_lut, write_image)
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.registry import DATASETS

# NYU-40 train ids (class id - 1)
WALL, FLOOR, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF, PICTURE, COUNTER, BLINDS, DESK, SHELVES, \
    CURTAIN, DRESSER, PILLOW, MIRROR, FLOOR_MAT, CLOTHES, CEILING, BOOKS, FRIDGE, TV, PAPER, TOWEL, \
    SHOWER_CURTAIN, BOX, WHITEBOARD, PERSON, NIGHT_STAND, TOILET, SINK, LAMP, BATHTUB, BAG, OTHERSTRUCTURE, \
    OTHERFURNITURE, OTHERPROP = range(40)

#: The synthetic raw-id -> class table (``mapClass`` of the synthetic ``classMapping40.mat``): raw id ``k``
#: (1..894) -> NYU-40 class ``(k - 1) % 40 + 1``, so every class has 22 or 23 raw ids.
SYNTHETIC_MAP_CLASS = (np.arange(NUM_RAW_CLASSES) % 40 + 1).astype(np.int64)

ROOM_TYPES = ("bedroom", "living_room", "kitchen", "office", "bathroom")

# texture ids
T_PLAIN, T_PLANKS, T_TILES, T_STRIPES, T_PANELS, T_FABRIC, T_WOOD, T_BOOKS, T_SLATS, T_FOLDS, T_SCREEN, \
    T_GLASS, T_CARPET = range(13)

# base albedo (RGB 0..255) per class; per-instance jitter is added
_ALBEDO = {
    CABINET: (150, 110, 75), BED: (190, 170, 150), CHAIR: (120, 80, 50), SOFA: (110, 90, 130), TABLE: (140, 95, 60),
    DOOR: (175, 140, 100), BOOKSHELF: (125, 90, 60), PICTURE: (150, 120, 90), COUNTER: (200, 195, 185),
    BLINDS: (225, 220, 205), DESK: (150, 115, 80), SHELVES: (160, 130, 95), CURTAIN: (150, 60, 60),
    DRESSER: (135, 90, 55), PILLOW: (225, 220, 210), MIRROR: (170, 185, 195), FLOOR_MAT: (120, 50, 50),
    CLOTHES: (60, 70, 120), BOOKS: (160, 60, 50), FRIDGE: (225, 225, 225), TV: (25, 25, 30), PAPER: (240, 240, 235),
    TOWEL: (200, 210, 230), SHOWER_CURTAIN: (210, 220, 235), BOX: (175, 140, 95), WHITEBOARD: (240, 242, 245),
    PERSON: (90, 70, 110), NIGHT_STAND: (130, 85, 55), TOILET: (240, 240, 240), SINK: (230, 230, 232),
    LAMP: (235, 215, 160), BATHTUB: (235, 235, 238), BAG: (70, 50, 40), OTHERSTRUCTURE: (200, 195, 190),
    OTHERFURNITURE: (120, 110, 100), OTHERPROP: (100, 140, 120), IGNORE: (128, 128, 128),
}
_TEXTURE = {BED: T_FABRIC, SOFA: T_FABRIC, CHAIR: T_WOOD, TABLE: T_WOOD, DESK: T_WOOD, DRESSER: T_WOOD,
            NIGHT_STAND: T_WOOD, CABINET: T_WOOD, DOOR: T_WOOD, BOOKSHELF: T_BOOKS, BLINDS: T_SLATS,
            CURTAIN: T_FOLDS, SHOWER_CURTAIN: T_FOLDS, TV: T_SCREEN, WINDOW: T_GLASS, PILLOW: T_FABRIC,
            CLOTHES: T_FABRIC, FLOOR_MAT: T_CARPET, TOWEL: T_FABRIC}


def _sample_seed(kind: str, split: str, index: int) -> int:
    return zlib.crc32(f"{kind}/{split}/{index}".encode())


def _hash(*ints: np.ndarray) -> np.ndarray:
    """A deterministic pseudo-random value in [0, 1) per integer cell (vectorised)."""
    h = np.zeros(np.broadcast(*ints).shape, dtype=np.uint64)
    for k, v in enumerate(ints):
        h ^= (np.asarray(v).astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B9 + 7919 * k)) \
            * np.uint64(0x85EBCA6B)
        h ^= h >> np.uint64(13)
        h *= np.uint64(0xC2B2AE35)
        h ^= h >> np.uint64(16)
    return (h & np.uint64(0xFFFFFF)).astype(np.float64) / float(0x1000000)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera (x right, y up, z forward) -> world; positive pitch looks down, positive yaw turns right."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


class _Room:
    """A box room (X in [0, width], Y in [0, height], Z in [0, length]) and the boxes inside it."""

    def __init__(self, rng: np.random.Generator, kind: str):
        self.rng, self.kind = rng, kind
        u = rng.uniform
        self.width, self.height, self.length = u(3.0, 6.0), u(2.4, 3.0), u(3.5, 7.5)
        self.cam = np.array([u(0.9, self.width - 0.9), u(1.0, 1.6), u(0.2, 0.8)])
        self.boxes: list[dict] = []
        self.footprints: list[tuple[float, float, float, float]] = []
        self.wall_spans: dict[str, list[tuple[float, float, float, float]]] = {"left": [], "right": [], "front": []}

    # -- geometry helpers -----------------------------------------------------------------------------------
    def add(self, lo, hi, cls: int, color=None, tex: int | None = None, glass: float = 0.0, emissive: bool = False,
            jitter: float = 18.0) -> dict:
        base = np.asarray(_ALBEDO.get(cls, (128, 128, 128)) if color is None else color, dtype=np.float64)
        box = dict(lo=np.asarray(lo, np.float64), hi=np.asarray(hi, np.float64), cls=int(cls),
                   color=np.clip(base + self.rng.uniform(-jitter, jitter, 3), 5, 250),
                   tex=_TEXTURE.get(cls, T_PLAIN) if tex is None else tex, glass=float(glass), emissive=emissive,
                   raw=int(self.rng.integers(0, 64)))
        self.boxes.append(box)
        return box

    def along_len(self, wall: str) -> float:
        return self.width if wall == "front" else self.length

    def against(self, wall: str, a0: float, a1: float, d0: float, d1: float, y0: float, y1: float):
        """(lo, hi) of a box spanning a0..a1 along ``wall`` and d0..d1 from it into the room."""
        if wall == "left":
            return (d0, y0, a0), (d1, y1, a1)
        if wall == "right":
            return (self.width - d1, y0, a0), (self.width - d0, y1, a1)
        return (a0, y0, self.length - d1), (a1, y1, self.length - d0)  # front

    def _free(self, lo, hi, margin: float = 0.05) -> bool:
        x0, x1, z0, z1 = lo[0] - margin, hi[0] + margin, lo[2] - margin, hi[2] + margin
        cx, _, cz = self.cam
        if x0 - 0.55 < cx < x1 + 0.55 and z0 - 0.55 < cz < z1 + 0.55:
            return False  # keep the camera out of (and not pressed against) furniture
        if lo[0] < 0 or lo[2] < 0 or hi[0] > self.width or hi[2] > self.length:
            return False
        return all(x1 <= a0 or x0 >= a1 or z1 <= b0 or z0 >= b1 for a0, a1, b0, b1 in self.footprints)

    def floor_item(self, width: float, depth: float, wall: str | None = None, tries: int = 25):
        """A free footprint: against ``wall`` (random position along it) or free-standing; (lo, hi) in XZ or
        None when nothing fits."""
        u = self.rng.uniform
        for _ in range(tries):
            if wall is None:
                x0, z0 = u(0.2, max(self.width - width - 0.2, 0.21)), u(1.0, max(self.length - depth - 0.3, 1.01))
                lo, hi = (x0, 0.0, z0), (x0 + width, 0.0, z0 + depth)
            else:
                span = self.along_len(wall)
                if span < width + 0.1:
                    return None
                a0 = u(0.05, span - width - 0.05)
                lo, hi = self.against(wall, a0, a0 + width, 0.0, depth, 0.0, 0.0)
            if self._free(lo, hi):
                self.footprints.append((lo[0], hi[0], lo[2], hi[2]))
                return np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        return None

    def wall_item(self, wall: str, width: float, y0: float, y1: float, tries: int = 10) -> float | None:
        """A free span of ``wall`` at heights y0..y1 (not overlapping other wall items); its start or None."""
        span = self.along_len(wall)
        if span < width + 0.2:
            return None
        for _ in range(tries):
            a0 = self.rng.uniform(0.1, span - width - 0.1)
            if all(a0 + width <= b0 or a0 >= b1 or y1 <= c0 or y0 >= c1 for b0, b1, c0, c1 in self.wall_spans[wall]):
                self.wall_spans[wall].append((a0, a0 + width, y0, y1))
                return a0
        return None

    def random_wall(self) -> str:
        return str(self.rng.choice(["left", "right", "front"], p=[0.25, 0.25, 0.5]))


# ---------------------------------------------------------------------------------------------- furniture
def _top_props(room: _Room, lo, hi, top: float, n: int, choices: Sequence[int]) -> None:
    """Small props standing on a top surface (box at height ``top`` over the XZ rectangle lo..hi)."""
    u = room.rng.uniform
    for _ in range(n):
        cls = int(room.rng.choice(choices))
        sx, sz = (hi[0] - lo[0]), (hi[2] - lo[2])
        w = min(u(0.12, 0.4), sx * 0.6)
        d = min(u(0.1, 0.35), sz * 0.6)
        h = {BOOKS: u(0.15, 0.3), LAMP: u(0.3, 0.55), TV: u(0.3, 0.6), PAPER: 0.01,
             BOX: u(0.1, 0.35)}.get(cls, u(0.08, 0.3))
        x0 = lo[0] + u(0.02, max(sx - w - 0.02, 0.021))
        z0 = lo[2] + u(0.02, max(sz - d - 0.02, 0.021))
        if cls == LAMP:  # a stem and a shade
            mx, mz = x0 + w / 2, z0 + d / 2
            room.add((mx - 0.02, top, mz - 0.02), (mx + 0.02, top + h * 0.6, mz + 0.02), LAMP)
            room.add((x0, top + h * 0.6, z0), (x0 + w, top + h, z0 + d), LAMP)
        elif cls == TV:
            room.add((x0, top, z0 + d * 0.4), (x0 + max(w, 0.35), top + h, z0 + d * 0.4 + 0.05), TV)
        else:
            room.add((x0, top, z0), (x0 + w, top + h, z0 + d), cls, tex=T_BOOKS if cls == BOOKS else None)


def _legged(room: _Room, lo, hi, top: float, cls: int, thick: float = 0.04, leg: float = 0.05) -> None:
    """A table / desk / chair seat: a slab at ``top`` and four legs."""
    room.add((lo[0], top - thick, lo[2]), (hi[0], top, hi[2]), cls)
    for x in (lo[0], hi[0] - leg):
        for z in (lo[2], hi[2] - leg):
            room.add((x, 0.0, z), (x + leg, top - thick, z + leg), cls)


def _chair(room: _Room) -> None:
    u = room.rng.uniform
    s = u(0.4, 0.5)
    fp = room.floor_item(s, s)
    if fp is None:
        return
    lo, hi = fp
    seat = u(0.42, 0.48)
    _legged(room, lo, hi, seat, CHAIR, thick=0.05, leg=0.04)
    back = room.rng.integers(4)
    if back == 0:
        room.add((lo[0], seat, lo[2]), (hi[0], seat + u(0.35, 0.5), lo[2] + 0.05), CHAIR)
    elif back == 1:
        room.add((lo[0], seat, hi[2] - 0.05), (hi[0], seat + u(0.35, 0.5), hi[2]), CHAIR)
    elif back == 2:
        room.add((lo[0], seat, lo[2]), (lo[0] + 0.05, seat + u(0.35, 0.5), hi[2]), CHAIR)
    else:
        room.add((hi[0] - 0.05, seat, lo[2]), (hi[0], seat + u(0.35, 0.5), hi[2]), CHAIR)


def _against_box(room: _Room, cls: int, width, depth, height, wall=None, y0: float = 0.0, props=0,
                 prop_choices=(BOX, BOOKS, OTHERPROP, LAMP), **kw):
    """A floor-standing box against a wall; returns its (lo, hi) or None."""
    wall = wall or room.random_wall()
    fp = room.floor_item(width, depth, wall)
    if fp is None:
        return None
    lo, hi = fp
    lo = lo.copy()
    hi = hi.copy()
    lo[1], hi[1] = y0, height
    room.add(lo, hi, cls, **kw)
    if props:
        _top_props(room, lo, hi, height, props, prop_choices)
    return lo, hi


def _wall_thing(room: _Room, cls: int, width, y0, y1, thick=0.02, wall=None, **kw):
    wall = wall or room.random_wall()
    a0 = room.wall_item(wall, width, y0, y1)
    if a0 is None:
        return None
    lo, hi = room.against(wall, a0, a0 + width, 0.0, thick, y0, y1)
    room.add(lo, hi, cls, **kw)
    return wall, a0


def _furnish(room: _Room) -> None:
    rng, u = room.rng, room.rng.uniform
    kind = room.kind
    # openings and wall objects
    if rng.random() < 0.85:
        w = u(0.8, 1.8)
        y0, y1 = u(0.7, 1.0), min(u(1.9, 2.3), room.height - 0.15)
        placed = _wall_thing(room, WINDOW, w, y0, y1, thick=0.02, glass=0.9 if rng.random() < 0.8 else 0.5,
                             emissive=True, color=(200, 220, 240), jitter=25)
        if placed is not None:
            wall, a0 = placed
            r = rng.random()
            if r < 0.35:  # blinds over the upper part of the window
                lo, hi = room.against(wall, a0, a0 + w, 0.02, 0.04, y0 + (y1 - y0) * u(0.3, 0.8), y1)
                room.add(lo, hi, BLINDS)
            elif r < 0.7:  # curtains beside it
                for a in (a0 - 0.35, a0 + w):
                    if 0.05 < a < room.along_len(wall) - 0.4:
                        lo, hi = room.against(wall, a, a + 0.35, 0.0, 0.1, 0.02, min(y1 + 0.2, room.height - 0.05))
                        room.add(lo, hi, CURTAIN)
    if rng.random() < 0.7:
        _wall_thing(room, DOOR, u(0.8, 0.95), 0.0, u(1.95, 2.1), thick=0.03)
    for _ in range(int(rng.integers(0, 3))):
        w = u(0.3, 1.0)
        y0 = u(1.1, 1.6)
        _wall_thing(room, PICTURE, w, y0, min(y0 + u(0.3, 0.8), room.height - 0.1), thick=0.03,
                    color=rng.uniform(40, 220, 3), jitter=10)
    if rng.random() < 0.12:  # a column or a beam
        if rng.random() < 0.5:
            x0 = u(0.3, room.width - 0.6)
            room.add((x0, room.height - u(0.2, 0.4), 0.0), (x0 + u(0.2, 0.4), room.height, room.length), OTHERSTRUCTURE)
        else:
            _against_box(room, OTHERSTRUCTURE, u(0.3, 0.5), u(0.3, 0.5), room.height)
    if rng.random() < 0.25:
        fp = room.floor_item(u(1.0, 2.0), u(0.8, 1.6))
        if fp is not None:
            lo, hi = fp
            room.add((lo[0], 0.0, lo[2]), (hi[0], 0.012, hi[2]), FLOOR_MAT, color=rng.uniform(60, 180, 3))
            room.footprints.pop()  # a mat does not block furniture

    if kind == "bedroom":
        wall = room.random_wall()
        bed = _against_box(room, BED, u(1.4, 2.0), u(1.9, 2.1), u(0.45, 0.6), wall=wall)
        if bed is not None:
            lo, hi = bed
            # pillows near the wall, clothes sometimes
            cx, cz = (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2
            for _ in range(int(rng.integers(1, 3))):
                px, pz = cx + u(-0.4, 0.2), cz + u(-0.4, 0.2)
                room.add((px, hi[1], pz), (px + 0.45, hi[1] + 0.12, pz + 0.3), PILLOW)
            if rng.random() < 0.4:
                room.add((cx, hi[1], cz), (cx + u(0.2, 0.5), hi[1] + 0.08, cz + u(0.2, 0.5)), CLOTHES)
        for _ in range(int(rng.integers(1, 3))):
            _against_box(room, NIGHT_STAND, u(0.4, 0.55), u(0.35, 0.45), u(0.5, 0.65), props=1,
                         prop_choices=(LAMP, BOOKS, OTHERPROP))
        if rng.random() < 0.7:
            _against_box(room, DRESSER, u(0.9, 1.5), u(0.45, 0.55), u(0.75, 1.1), props=int(rng.integers(0, 3)),
                         prop_choices=(TV, BOX, OTHERPROP, LAMP))
        if rng.random() < 0.4:
            _against_box(room, CABINET, u(0.8, 1.4), u(0.5, 0.6), u(1.7, 2.1))
    elif kind == "living_room":
        _against_box(room, SOFA, u(1.6, 2.3), u(0.8, 0.95), u(0.75, 0.9), props=0)
        if room.boxes and room.boxes[-1]["cls"] == SOFA and rng.random() < 0.7:
            s = room.boxes[-1]
            lo, hi = s["lo"], s["hi"]
            room.add((lo[0] + 0.1, hi[1], lo[2] + 0.1), (lo[0] + 0.5, hi[1] + 0.15, lo[2] + 0.4), PILLOW)
        fp = room.floor_item(u(0.8, 1.3), u(0.5, 0.8))
        if fp is not None:
            lo, hi = fp
            top = u(0.4, 0.5)
            _legged(room, lo, hi, top, TABLE)
            _top_props(room, lo, hi, top, int(rng.integers(0, 3)), (BOOKS, BOX, PAPER, OTHERPROP))
        tv = _against_box(room, CABINET, u(1.0, 1.8), u(0.4, 0.5), u(0.45, 0.6))
        if tv is not None:
            lo, hi = tv
            room.add((lo[0] + 0.1, hi[1], (lo[2] + hi[2]) / 2 - 0.03), (lo[0] + 0.1 + u(0.6, 1.0), hi[1] + u(0.4, 0.6),
                     (lo[2] + hi[2]) / 2 + 0.03), TV)
        if rng.random() < 0.6:
            _against_box(room, BOOKSHELF, u(0.8, 1.2), u(0.3, 0.38), u(1.6, 2.1))
        for _ in range(int(rng.integers(0, 3))):
            _chair(room)
    elif kind == "kitchen":
        wall = room.random_wall()
        for _ in range(int(rng.integers(1, 3))):
            c = _against_box(room, COUNTER, u(1.2, 2.5), 0.6, u(0.88, 0.95), wall=wall, props=int(rng.integers(0, 3)),
                             prop_choices=(BOX, OTHERPROP, PAPER))
            if c is not None:
                lo, hi = c
                if rng.random() < 0.5:  # a sink in the counter top
                    x0 = (lo[0] + hi[0]) / 2 - 0.25
                    z0 = (lo[2] + hi[2]) / 2 - 0.2
                    room.add((x0, hi[1], z0), (x0 + 0.5, hi[1] + 0.03, z0 + 0.4), SINK)
        _against_box(room, FRIDGE, u(0.65, 0.85), u(0.65, 0.75), u(1.7, 1.9))
        for _ in range(int(rng.integers(0, 3))):
            _wall_thing(room, CABINET, u(0.6, 1.4), 1.45, min(u(2.0, 2.3), room.height - 0.05), thick=0.35)
        fp = room.floor_item(u(0.8, 1.4), u(0.7, 1.0))
        if fp is not None:
            lo, hi = fp
            top = u(0.72, 0.78)
            _legged(room, lo, hi, top, TABLE)
            _top_props(room, lo, hi, top, int(rng.integers(0, 3)), (BOX, OTHERPROP, PAPER))
        for _ in range(int(rng.integers(0, 3))):
            _chair(room)
    elif kind == "office":
        for _ in range(int(rng.integers(1, 3))):
            wall = room.random_wall()
            fp = room.floor_item(u(1.1, 1.6), u(0.6, 0.8), wall)
            if fp is not None:
                lo, hi = fp
                top = u(0.72, 0.76)
                _legged(room, lo, hi, top, DESK)
                _top_props(room, lo, hi, top, int(rng.integers(1, 4)), (TV, BOOKS, PAPER, BOX, LAMP, OTHERPROP))
        for _ in range(int(rng.integers(1, 3))):
            _chair(room)
        if rng.random() < 0.7:
            _against_box(room, BOOKSHELF, u(0.8, 1.2), u(0.3, 0.38), u(1.6, 2.1))
        if rng.random() < 0.5:
            _wall_thing(room, WHITEBOARD, u(1.0, 2.0), 0.9, min(u(1.8, 2.1), room.height - 0.1), thick=0.02)
        if rng.random() < 0.5:
            y0 = u(1.3, 1.6)
            _wall_thing(room, SHELVES, u(0.6, 1.2), y0, y0 + 0.04, thick=0.25)
        if rng.random() < 0.4:
            _against_box(room, CABINET, u(0.4, 0.9), u(0.45, 0.6), u(0.7, 1.3))
    else:  # bathroom
        _against_box(room, BATHTUB, u(1.5, 1.7), u(0.7, 0.8), u(0.5, 0.6))
        if rng.random() < 0.6 and room.boxes and room.boxes[-1]["cls"] == BATHTUB:
            b = room.boxes[-1]
            lo, hi = b["lo"], b["hi"]
            room.add((lo[0], hi[1] + 0.05, lo[2]), (hi[0], min(hi[1] + 1.5, room.height - 0.1), lo[2] + 0.03),
                     SHOWER_CURTAIN)
        t = _against_box(room, TOILET, u(0.38, 0.45), u(0.6, 0.7), u(0.4, 0.45))
        if t is not None:
            lo, hi = t
            room.add((lo[0], hi[1], lo[2]), (hi[0], hi[1] + 0.35, lo[2] + 0.18), TOILET)  # cistern
        s = _against_box(room, CABINET, u(0.6, 1.0), u(0.45, 0.55), u(0.8, 0.9))
        if s is not None:
            lo, hi = s
            room.add((lo[0] + 0.1, hi[1], lo[2] + 0.05), (hi[0] - 0.1, hi[1] + 0.12, hi[2] - 0.05), SINK)
        _wall_thing(room, MIRROR, u(0.5, 1.0), 1.2, min(u(1.8, 2.0), room.height - 0.1), thick=0.01,
                    glass=1.0, color=(170, 185, 195))
        for _ in range(int(rng.integers(1, 3))):
            _wall_thing(room, TOWEL, u(0.3, 0.6), u(0.8, 1.1), u(1.3, 1.5), thick=0.05,
                        color=rng.uniform(80, 230, 3))
    # more furniture along the walls
    for _ in range(int(rng.integers(0, 3))):
        cls = int(rng.choice([CABINET, OTHERFURNITURE, BOOKSHELF, DRESSER, CABINET]))
        height = {BOOKSHELF: u(1.6, 2.1), DRESSER: u(0.75, 1.1)}.get(cls, u(0.6, 1.9))
        _against_box(room, cls, u(0.5, 1.4), u(0.35, 0.6), height, props=int(rng.integers(0, 2)) if height < 1.3 else 0,
                     prop_choices=(BOX, BOOKS, OTHERPROP, LAMP, TV))
    # things on the floor; unlabeled clutter; occasionally a person
    for _ in range(int(rng.integers(0, 3))):
        cls = int(rng.choice([BOX, BAG, OTHERPROP, OTHERFURNITURE, IGNORE, IGNORE]))
        w, d = u(0.25, 0.6), u(0.25, 0.6)
        fp = room.floor_item(w, d, room.random_wall() if rng.random() < 0.6 else None)
        if fp is not None:
            lo, hi = fp
            room.add((lo[0], 0.0, lo[2]), (hi[0], u(0.2, 0.7), hi[2]), cls,
                     color=rng.uniform(50, 200, 3) if cls in (IGNORE, OTHERPROP) else None)
    if rng.random() < 0.12:
        fp = room.floor_item(0.45, 0.3)
        if fp is not None:
            lo, hi = fp
            h = u(1.55, 1.85)
            room.add((lo[0], 0.0, lo[2]), (hi[0], h * 0.87, hi[2]), PERSON, color=rng.uniform(40, 160, 3))
            room.add((lo[0] + 0.12, h * 0.87, lo[2] + 0.05), (hi[0] - 0.12, h, hi[2] - 0.05), PERSON,
                     color=(210, 170, 140), jitter=20)


# ---------------------------------------------------------------------------------------------- rendering
def _texture(tex: np.ndarray, a: np.ndarray, b: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Multiplicative luminance modulation (about -0.4..0.4) of each pixel's texture id, in world units."""
    out = np.zeros(a.shape, dtype=np.float64)
    p = period

    def sel(t):
        return tex == t

    m = sel(T_PLANKS)
    if m.any():
        q = a[m] / p[m]
        seam = (q - np.floor(q)) < 0.07
        out[m] = np.where(seam, -0.35, (_hash(np.floor(q)) - 0.5) * 0.3)
    m = sel(T_TILES)
    if m.any():
        qa, qb = a[m] / p[m], b[m] / p[m]
        grout = ((qa - np.floor(qa)) < 0.06) | ((qb - np.floor(qb)) < 0.06)
        check = ((np.floor(qa) + np.floor(qb)) % 2) * 0.08
        out[m] = np.where(grout, -0.3, check)
    m = sel(T_STRIPES)
    if m.any():
        out[m] = 0.12 * np.sin(2 * np.pi * a[m] / p[m])
    m = sel(T_PANELS)
    if m.any():
        qa, qb = a[m] / 0.6, b[m] / 0.6
        out[m] = np.where(((qa - np.floor(qa)) < 0.04) | ((qb - np.floor(qb)) < 0.04), -0.22, 0.0)
    m = sel(T_FABRIC)
    if m.any():
        out[m] = 0.07 * np.sin(2 * np.pi * a[m] / 0.08) * np.sin(2 * np.pi * b[m] / 0.08) \
            + 0.08 * np.sin(2 * np.pi * (a[m] + b[m]) / 0.45)
    m = sel(T_WOOD)
    if m.any():
        out[m] = 0.09 * np.sin(2 * np.pi * (b[m] + 0.04 * np.sin(2 * np.pi * a[m] / 0.3)) / 0.05)
    m = sel(T_BOOKS)
    if m.any():
        qa, qb = a[m] / 0.035, b[m] / 0.33
        board = (qb - np.floor(qb)) < 0.1
        out[m] = np.where(board, 0.15, (_hash(np.floor(qa), np.floor(qb)) - 0.5) * 1.0)
    m = sel(T_SLATS)
    if m.any():
        q = b[m] / 0.05
        out[m] = np.where((q - np.floor(q)) < 0.3, -0.25, 0.05)
    m = sel(T_FOLDS)
    if m.any():
        out[m] = 0.18 * np.sin(2 * np.pi * a[m] / 0.12)
    m = sel(T_GLASS)
    if m.any():
        qa = a[m] / 0.6
        out[m] = np.where((qa - np.floor(qa)) < 0.05, -0.6, 0.1 * (b[m] - 1.5))
    return out


class _RenderedRooms(NYUResults, Dataset):
    """Rooms drawn by :func:`render_room`, deterministic per ``(seed_name, seed_stream, index)`` and memoised on
    the dataset object up to :attr:`cache_bytes` (renders are deterministic, so this changes speed only: a few
    hundred small rooms are drawn once instead of every epoch). Cached arrays are read-only; a loader worker
    starts with an empty cache. Subclasses set ``seed_name`` and the attribute named by ``seed_stream``."""

    seed_name = ""
    seed_stream = ""
    cache_bytes = 256 * 2 ** 20

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_render_cache", None)
        state.pop("_render_cache_bytes", None)
        return state

    def render(self, index: int) -> dict:
        """Everything :func:`render_room` returns for sample ``index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"{self.seed_name} index {index} out of range for {self.num_samples} samples")
        cache = self.__dict__.setdefault("_render_cache", {})
        if index in cache:
            return cache[index]
        rng = np.random.default_rng(_sample_seed(self.seed_name, getattr(self, self.seed_stream), index))
        out = render_room(rng, *self.size)
        size = sum(v.nbytes for v in out.values() if isinstance(v, np.ndarray))
        used = self.__dict__.get("_render_cache_bytes", 0)
        if used + size <= self.cache_bytes:
            for v in out.values():
                if isinstance(v, np.ndarray):
                    v.flags.writeable = False
            cache[index] = out
            self._render_cache_bytes = used + size
        return out

def render_room(rng: np.random.Generator, height: int, width: int, kind: str | None = None) -> dict:
    """Ray-cast one room; returns ``image`` (H x W x 3 uint8), ``depth`` (H x W float32 metres, complete),
    ``raw_depth`` (with Kinect-like holes, 0), ``label`` (H x W uint8 NYU-40 train ids, 255 = unlabeled),
    ``raw_label`` (H x W uint16 raw ids 1..894 of :data:`SYNTHETIC_MAP_CLASS`, 0 = unlabeled), ``focal`` (px),
    ``K`` = (fx, fy, cx, cy) (pixels; pixel (v, u) sees the camera ray ((u - cx) / fx, (v - cy) / fy, 1), y down),
    ``surface`` (H x W int: 0 floor, 1 ceiling, 2 wall plane, 3 object) and ``kind`` (the room type)."""
    u = rng.uniform
    kind = kind or str(rng.choice(ROOM_TYPES))
    room = _Room(rng, kind)
    _furnish(room)

    # camera
    h, w = height, width
    f = NYU_FOCAL * w / NYU_FRAME[1]
    cx, cy = (w - 1) / 2 + u(-0.02, 0.02) * w, (h - 1) / 2 + u(-0.02, 0.02) * h
    R = _rotation(np.deg2rad(u(-25, 25)), np.deg2rad(u(-4, 16)), np.deg2rad(u(-3, 3)))
    vv, uu = np.mgrid[0:h, 0:w].astype(np.float64)
    d_cam = np.stack([(uu - cx) / f, -(vv - cy) / f, np.ones_like(uu)], axis=-1)
    d = d_cam @ R.T  # world direction per pixel; the hit parameter t equals the camera-frame depth z
    o = room.cam
    eps = 1e-9
    dz = np.where(np.abs(d) < eps, eps, d)

    # room planes: (axis, coordinate, surface code, label)
    t = np.full((h, w), np.inf)
    axis = np.zeros((h, w), dtype=np.int64)
    plane_of = np.zeros((h, w), dtype=np.int64)  # 0 floor 1 ceiling 2 left 3 right 4 front 5 back
    for code, (ax, coord) in enumerate(((1, 0.0), (1, room.height), (0, 0.0), (0, room.width), (2, room.length),
                                        (2, 0.0))):
        tt = (coord - o[ax]) / dz[..., ax]
        ok = (tt > 0) & (tt < t)
        t[ok], axis[ok], plane_of[ok] = tt[ok], ax, code
    obj = np.full((h, w), -1, dtype=np.int64)
    for k, box in enumerate(room.boxes):
        t1 = (box["lo"] - o) / dz
        t2 = (box["hi"] - o) / dz
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        tnear, tfar = tmin.max(-1), tmax.min(-1)
        ok = (tnear <= tfar) & (tnear > 1e-6) & (tnear < t)
        if ok.any():
            t[ok] = tnear[ok]
            axis[ok] = tmin.argmax(-1)[ok]
            obj[ok] = k
    p = o + d * t[..., None]

    # labels and per-pixel material
    is_obj = obj >= 0
    surface = np.where(is_obj, 3, np.select([plane_of == 0, plane_of == 1], [0, 1], 2))
    label = np.where(surface == 0, FLOOR, np.where(surface == 1, CEILING, WALL)).astype(np.int64)
    n_box = len(room.boxes)
    box_cls = np.array([b["cls"] for b in room.boxes] + [0], dtype=np.int64)
    box_col = np.array([b["color"] for b in room.boxes] + [(0, 0, 0)], dtype=np.float64)
    box_tex = np.array([b["tex"] for b in room.boxes] + [0], dtype=np.int64)
    box_glass = np.array([b["glass"] for b in room.boxes] + [0.0])
    box_emit = np.array([b["emissive"] for b in room.boxes] + [False])
    box_raw = np.array([b["raw"] for b in room.boxes] + [0], dtype=np.int64)
    oi = np.where(is_obj, obj, n_box)
    label = np.where(is_obj, box_cls[oi], label)

    # surfaces of the room: floor, ceiling, walls
    floor_tex = {"bathroom": T_TILES, "kitchen": T_TILES}.get(
        kind, int(rng.choice([T_PLANKS, T_PLANKS, T_TILES, T_CARPET])))
    floor_col = {T_PLANKS: (150, 105, 65), T_TILES: (185, 180, 170), T_CARPET: (110, 100, 95)}[floor_tex]
    wall_tex = T_TILES if kind == "bathroom" else (T_STRIPES if rng.random() < 0.45 else T_PLAIN)
    hue = rng.uniform(0, 1)
    wall_col = 185 + 45 * np.array([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) * u(0.2, 0.6)
    plane_col = np.array([np.asarray(floor_col) + rng.uniform(-20, 20, 3), rng.uniform(225, 245) * np.ones(3)]
                         + [wall_col + rng.uniform(-8, 8, 3)] * 4, dtype=np.float64)
    plane_tex = np.array([floor_tex, T_PANELS] + [wall_tex] * 4)
    plane_period = np.array([u(0.15, 0.25) if floor_tex == T_PLANKS else u(0.3, 0.6), 0.6] + [u(0.15, 0.4)] * 4)
    albedo = np.where(is_obj[..., None], box_col[oi], plane_col[plane_of])
    tex_id = np.where(is_obj, box_tex[oi], plane_tex[plane_of])
    period = np.where(is_obj, 0.3, plane_period[plane_of])
    # face coordinates (a, b) in metres: the two axes other than the face normal
    a_coord = np.where(axis == 0, p[..., 2], p[..., 0])
    b_coord = np.where(axis == 1, p[..., 2], p[..., 1])
    # carpet: fine grain without a scale cue
    mod = _texture(tex_id, a_coord, b_coord, period)
    carpet = tex_id == T_CARPET
    if carpet.any():
        mod[carpet] = rng.uniform(-0.08, 0.08, int(carpet.sum()))
    albedo = albedo * (1.0 + mod[..., None])

    # shading: a light at the camera and a ceiling lamp
    normal = np.zeros((h, w, 3))
    sign = -np.sign(np.take_along_axis(d, axis[..., None], -1)[..., 0])
    np.put_along_axis(normal, axis[..., None], sign[..., None], -1)
    ray = d / np.linalg.norm(d, axis=-1, keepdims=True)
    cam_term = np.abs((normal * ray).sum(-1)) / (1.0 + (t / 2.5) ** 2)
    lamp = np.array([room.width * u(0.3, 0.7), room.height - 0.05, room.length * u(0.3, 0.7)])
    to_l = lamp - p
    dist_l = np.linalg.norm(to_l, axis=-1)
    lamp_term = np.clip((normal * to_l).sum(-1) / np.maximum(dist_l, 1e-6), 0, 1) / (1 + 0.12 * dist_l ** 2)
    shade = 0.1 + 1.3 * cam_term + u(0.15, 0.3) * lamp_term
    img = albedo * shade[..., None] * u(0.9, 1.1)
    emit = is_obj & box_emit[oi]
    if emit.any():  # windows: daylight, not lit by the room
        img[emit] = (albedo[emit] * u(0.85, 1.05))
    haze = (1 - np.exp(-t / 15.0))[..., None]
    img = img * (1 - haze) + haze * np.array([150.0, 155.0, 165.0])
    img += rng.normal(0, 2.5, img.shape)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    depth = t.astype(np.float32)

    # Kinect-like holes in the raw depth
    raw = depth.copy()
    glass = is_obj & (box_glass[oi] > 0)
    if glass.any():
        raw[glass & (rng.random((h, w)) < box_glass[oi])] = 0.0
    jump = np.zeros((h, w), dtype=bool)
    jump[:, 1:] = (depth[:, 1:] - depth[:, :-1]) > 0.25  # a far pixel right of a near one: IR shadow
    shadow = jump.copy()
    for s in range(1, max(int(round(w * 0.015)), 1) + 1):
        shadow[:, s:] |= jump[:, :-s]
    raw[shadow & (rng.random((h, w)) < 0.8)] = 0.0
    raw[(depth > 6.5) & (rng.random((h, w)) < 0.1)] = 0.0
    raw[rng.random((h, w)) < 0.003] = 0.0
    left = int(round(w * u(0.0, 0.04)))
    top, bottom = int(round(h * u(0.0, 0.02))), int(round(h * u(0.0, 0.02)))
    raw[:, :left] = 0.0
    raw[:top] = 0.0
    if bottom:
        raw[h - bottom:] = 0.0

    # unlabeled: part of the object boundaries
    edge = np.zeros((h, w), dtype=bool)
    edge[:, 1:] |= label[:, 1:] != label[:, :-1]
    edge[1:] |= label[1:] != label[:-1]
    label = np.where(edge & (rng.random((h, w)) < 0.3), IGNORE, label)
    label = label.astype(np.uint8)

    # raw ids: each object (and each room plane) has one raw id of its class
    plane_raw = rng.integers(0, 64, 6)
    pick = np.where(is_obj, box_raw[oi], plane_raw[plane_of])
    n_alias = (NUM_RAW_CLASSES - 1 - label.astype(np.int64)) // 40 + 1  # raw ids c+1, c+41, ... <= 894
    raw_label = np.where(label == IGNORE, 0, label.astype(np.int64) + 1 + 40 * (pick % np.maximum(n_alias, 1)))
    return dict(image=image, depth=depth, raw_depth=raw, label=label, raw_label=raw_label.astype(np.uint16),
                focal=float(f), K=(float(f), float(f), float(cx), float(cy)), surface=surface, kind=kind)


# ---------------------------------------------------------------------------------------------- writers
_MATLAB_HEADER = "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: densekd synthetic_nyu HDF5 schema 1.00 ."


def _stamp_v73_header(path: str) -> None:
    """Write the 128-byte MATLAB v7.3 header into the file's 512-byte HDF5 user block (what MATLAB writes), so
    tools such as scipy.io recognise the file as v7.3."""
    text = _MATLAB_HEADER.encode().ljust(116, b" ")[:116]
    header = text + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(header)


def write_labeled_mat(path: str, images, depths, labels, names: Sequence[str] | None = None, raw_depths=None,
                      depth_dtype=np.float32) -> str:
    """Write ``nyu_depth_v2_labeled.mat`` as MATLAB v7.3 does: HDF5 (with the MATLAB header in a 512-byte user
    block) holding MATLAB's column-major arrays, which h5py shows with reversed axes.

    Args (numpy, natural order): ``images`` N x H x W x 3 uint8 -> dataset ``images`` (N, 3, W, H) uint8;
    ``depths`` N x H x W metres -> ``depths`` (N, W, H) ``depth_dtype``; ``labels`` N x H x W raw ids ->
    ``labels`` (N, W, H) uint16; ``raw_depths`` (optional) -> ``rawDepths``; ``names`` (optional) -> ``names``,
    a cell array of strings (object references into ``#refs#``). Datasets are chunked one frame per chunk.
    """
    import h5py

    images, depths, labels = np.asarray(images), np.asarray(depths), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be N x H x W x 3 uint8; got {images.shape} {images.dtype}")
    n, h, w = images.shape[:3]
    for name, arr in (("depths", depths), ("labels", labels)) + ((("raw_depths", np.asarray(raw_depths)),)
                                                                 if raw_depths is not None else ()):
        if arr.shape != (n, h, w):
            raise ValueError(f"{name} must be N x H x W = {(n, h, w)} to match the images; got {arr.shape}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError("labels must fit uint16")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mclass = {np.dtype(np.float32): "single", np.dtype(np.float64): "double"}[np.dtype(depth_dtype)]
    with h5py.File(path, "w", userblock_size=512) as f:
        def put(key, arr, cls):
            ds = f.create_dataset(key, data=arr, chunks=(1,) + arr.shape[1:])
            ds.attrs["MATLAB_class"] = np.bytes_(cls)

        put("images", np.ascontiguousarray(images.transpose(0, 3, 2, 1)), "uint8")
        put("depths", np.ascontiguousarray(depths.transpose(0, 2, 1)).astype(depth_dtype), mclass)
        if raw_depths is not None:
            raw = np.ascontiguousarray(np.asarray(raw_depths).transpose(0, 2, 1)).astype(depth_dtype)
            put("rawDepths", raw, mclass)
        put("labels", np.ascontiguousarray(labels.transpose(0, 2, 1)).astype(np.uint16), "uint16")
        if names is not None:
            refs_group = f.create_group("#refs#")
            refs = np.empty((1, len(names)), dtype=h5py.ref_dtype)  # MATLAB's len x 1 cell, reversed
            for i, name in enumerate(names):
                chars = refs_group.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in str(name)] or [[0]],
                                                                           dtype=np.uint16))
                chars.attrs["MATLAB_class"] = np.bytes_("char")
                refs[0, i] = chars.ref
            ds = f.create_dataset("names", data=refs, dtype=h5py.ref_dtype)
            ds.attrs["MATLAB_class"] = np.bytes_("cell")
    _stamp_v73_header(path)
    return path


def write_splits_mat(path: str, train_idx, test_idx) -> str:
    """Write ``splits.mat`` (MATLAB v5, as the official file): ``trainNdxs`` / ``testNdxs`` as 1-based double
    column vectors from the given 0-based frame indices."""
    import scipy.io

    out = {}
    for key, idx in (("trainNdxs", train_idx), ("testNdxs", test_idx)):
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.dtype.kind not in "ui" or idx.min(initial=0) < 0:
            raise ValueError(f"{key}: expected a 1-D array of 0-based frame indices; got {idx.shape} {idx.dtype}")
        out[key] = (idx.astype(np.float64) + 1).reshape(-1, 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    scipy.io.savemat(path, out)
    return path


def write_mapping_mat(path: str, map_class=SYNTHETIC_MAP_CLASS, class_names: Sequence[str] = CLASSES40,
                      keys: Sequence[str] = ("mapClass", "className")) -> str:
    """Write ``classMapping40.mat`` (MATLAB v5): ``mapClass`` 1 x K double (new class id of raw id 1..K, 0 =
    unlabeled) and ``className`` 1 x C cell of names."""
    import scipy.io

    map_class = np.asarray(map_class)
    if map_class.ndim != 1:
        raise ValueError(f"map_class must be a 1-D array (new class id per raw id 1..K); got {map_class.shape}")
    cells = np.empty((1, len(class_names)), dtype=object)
    for i, name in enumerate(class_names):
        cells[0, i] = str(name)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    scipy.io.savemat(path, {keys[0]: map_class.astype(np.float64).reshape(1, -1), keys[1]: cells})
    return path


# ---------------------------------------------------------------------------------------------- datasets
def _synthetic_size(size) -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f"size must be (height, width) with both >= 16; got {size!r}")
    return size


def _clamp_crop(crop_size, size):
    # a crop meant for 480 x 640 frames is clamped to the synthetic frame
    if crop_size is None:
        return None
    if isinstance(crop_size, int):
        crop_size = (crop_size, crop_size)
    return min(int(crop_size[0]), size[0]), min(int(crop_size[1]), size[1])


@DATASETS.register()
class SyntheticNYUDepthV2(_RenderedRooms):
    """Procedural stand-in for :class:`~densekd.data.nyu.NYUDepthV2`: the same arguments (``root`` and the file
    names are accepted and ignored; ``mapping_file=None`` still means raw ids), sample keys, dtypes and
    conventions, on rooms from :func:`render_room`.

    Extra args: ``num_samples`` (default 200 for train, 50 for test) and ``size`` = (H, W) (default 96 x 128;
    the real frames are 480 x 640). A ``crop_size`` larger than ``size`` is clamped to it. Samples are
    deterministic per (split, index), independent of the global RNG (only augmentation draws from that).
    ``depth_key='depths'`` gives the complete depth (like the in-painted labeled depths), ``'rawDepths'`` the
    depth with Kinect-like holes (0). ``write_tree`` writes the three real files.
    """

    load_keys = ('image', 'depth', 'label')  # what load(index) returns, in order

    CLASSES = CLASSES40
    PALETTE = PALETTE40
    class_names = list(CLASSES40)
    palette = list(PALETTE40)
    num_classes = len(CLASSES40)
    seed_name, seed_stream = "SyntheticNYUDepthV2", "split"
    DEFAULT_SIZES = {"train": 200, "test": 50}

    def __init__(self, root: str | None = None, split: str = "train", mat_file: str = "nyu_depth_v2_labeled.mat",
                 splits_file: str = "splits.mat", mapping_file: str | None = "classMapping40.mat",
                 num_classes: int = 40, crop_size: Sequence[int] | int | None = None, augment: bool | None = None,
                 scale_range: Sequence[float] | None = (1.0, 1.5), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_depth: float | None = 10.0, target: str = "label",
                 mapping_keys: Sequence[str] = ("mapClass", "className"), mapping13_file: str | None = None,
                 depth_key: str = "depths", scale_depth: bool = True, hha: str | None = None,
                 hha_pattern: str = HHA_PATTERN, hha_mean: Sequence[float] = IMAGENET_MEAN,
                 hha_std: Sequence[float] = IMAGENET_STD, num_samples: int | None = None,
                 size: Sequence[int] | int = (96, 128)):
        if split not in ("train", "test"):
            raise ValueError(f"NYU-Depth v2 split must be 'train' or 'test'; got {split!r}")
        self.hha = hha  # any value but None: computed from the room's complete depth (no files to read)
        if depth_key not in ("depths", "rawDepths"):
            raise ValueError(f"depth_key must be 'depths' or 'rawDepths'; got {depth_key!r}")
        self.root, self.split = root, split
        self.target = _check_target(target)
        self.depth_key = depth_key
        self.size = _synthetic_size(size)
        n = self.DEFAULT_SIZES[split] if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples!r}")
        self.num_samples = n
        if mapping_file is None:
            self.lut = None
            self.label_fill = 0
            self.num_classes = NUM_RAW_CLASSES
            self.class_names, self.palette = None, None
        else:
            if num_classes not in (40, 13):
                raise ValueError(f"num_classes must be 40 (NYU-40) or 13 (NYU-13); got {num_classes!r}")
            self.lut = label_lut(SYNTHETIC_MAP_CLASS, num_classes, MAP40_TO_13 if num_classes == 13 else None)
            self.label_fill = IGNORE
            self.num_classes = num_classes
            self.class_names = list(CLASSES40 if num_classes == 40 else CLASSES13)
            self.palette = list(PALETTE40 if num_classes == 40 else PALETTE13)
        augment = split == "train" if augment is None else bool(augment)
        self.augment = augment
        self.max_depth = max_depth
        self.crop_size = _clamp_crop(crop_size, self.size)
        self.transform = NYUTransform(augment, self.crop_size, scale_range, flip, mean, std, max_depth,
                                      label_fill=self.label_fill, scale_depth=scale_depth, hha_mean=hha_mean,
                                      hha_std=hha_std)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(H x W x 3 uint8, H x W float32 metres, H x W labels) as :meth:`NYUDepthV2.load`."""
        r = self.render(index)
        depth = r["depth"] if self.depth_key == "depths" else r["raw_depth"]
        label = r["raw_label"] if self.lut is None else self.lut[r["raw_label"].astype(np.int64)]
        return r["image"], depth, label

    def sample_id(self, index: int) -> str:
        """``'<split>_<index + 1:04d>'`` (the stand-in has no labeled-file frame numbers)."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"{self.seed_name} index {index} out of range for {self.num_samples} samples")
        return f"{self.split}_{index + 1:04d}"

    def load_hha(self, index: int) -> np.ndarray:
        """HHA (H x W x 3 uint8) of the room's complete depth with its own camera (:func:`depth_to_hha`)."""
        r = self.render(index)
        return depth_to_hha(r["depth"], r["K"])

    def __getitem__(self, index: int) -> dict:
        image, depth, label = self.load(index)
        hha = None if self.hha is None else self.load_hha(index)
        out = self.transform(image, depth, label, hha=hha)
        sample = {"image": out["image"], "depth": out["depth"], "label": out["label"]}
        if hha is not None:
            sample["hha"] = out["hha"]
        sample["target"] = sample[self.target]
        sample["index"] = int(index)
        return sample

    @classmethod
    def write_tree(cls, root: str, n_train: int = 6, n_test: int = 3, size: Sequence[int] = (96, 128),
                   names: bool = True, hha: str | None = None) -> dict[str, str]:
        """Write ``nyu_depth_v2_labeled.mat`` (with ``depths``, ``rawDepths``, raw ``labels`` and ``names``),
        ``splits.mat`` and ``classMapping40.mat`` under ``root`` from the synthetic rooms. The frames of both
        splits are interleaved in the .mat file (test = every third frame, like the official scene-wise split);
        ``NYUDepthV2(root, split).load(i)`` then equals ``SyntheticNYUDepthV2(split=split, size=size).load(i)``.
        With ``hha='hha'`` also the HHA PNG of every frame (:meth:`load_hha`) in ``root/hha``, named by
        :data:`~densekd.data.nyu.HHA_PATTERN`. Returns the paths."""
        n = n_train + n_test
        order = np.arange(n)
        test_pos = order[order % 3 == 2][:n_test]
        if len(test_pos) < n_test:
            test_pos = np.concatenate([test_pos, order[~np.isin(order, test_pos)][-(n_test - len(test_pos)):]])
        test_pos = np.sort(test_pos)
        train_pos = order[~np.isin(order, test_pos)]
        images = np.zeros((n, size[0], size[1], 3), np.uint8)
        depths = np.zeros((n, size[0], size[1]), np.float32)
        raw_depths = np.zeros_like(depths)
        labels = np.zeros((n, size[0], size[1]), np.uint16)
        for split, positions in (("train", train_pos), ("test", test_pos)):
            ds = cls(split=split, num_samples=max(len(positions), 1), size=size, augment=False)
            for i, j in enumerate(positions):
                r = ds.render(i)
                images[j], depths[j], raw_depths[j], labels[j] = r["image"], r["depth"], r["raw_depth"], r["raw_label"]
        raw_names = [f"{CLASSES40[k % 40]}#{k // 40}" for k in range(NUM_RAW_CLASSES)] if names else None
        paths = dict(mat_file=os.path.join(root, "nyu_depth_v2_labeled.mat"),
                     splits_file=os.path.join(root, "splits.mat"),
                     mapping_file=os.path.join(root, "classMapping40.mat"))
        write_labeled_mat(paths["mat_file"], images, depths, labels, names=raw_names, raw_depths=raw_depths)
        write_splits_mat(paths["splits_file"], train_pos, test_pos)
        write_mapping_mat(paths["mapping_file"], SYNTHETIC_MAP_CLASS, CLASSES40)
        if hha is not None:  # HHA PNGs in the folder `hha` under root, named by the default pattern
            paths["hha"] = os.path.join(root, hha)
            for split, positions in (("train", train_pos), ("test", test_pos)):
                ds = cls(split=split, num_samples=max(len(positions), 1), size=size, augment=False)
                for i, j in enumerate(positions):
                    write_hha(hha_path(paths["hha"], HHA_PATTERN, int(j)), ds.load_hha(i))
        return paths

    def __repr__(self) -> str:
        return (f"SyntheticNYUDepthV2(split={self.split!r}, n={self.num_samples}, size={self.size}, "
                f"target={self.target!r}, augment={self.augment})")


@DATASETS.register()
class SyntheticNYUDepthRaw(_RenderedRooms):
    """Procedural stand-in for :class:`~densekd.data.nyu.NYUDepthRaw`: the same arguments (``root`` accepted
    and ignored; ``filelist`` names the stream: samples are deterministic per (file-list name, index)) plus
    ``num_samples`` (default 400) and ``size`` (default 96 x 128). Depth has Kinect-like holes and is quantised
    to millimetres (what a uint16 PNG holds); ``focal`` is NYU's focal scaled to the frame width."""

    load_keys = ('image', 'depth')  # what load(index) returns, in order
    seed_name, seed_stream = "SyntheticNYUDepthRaw", "stream"

    def __init__(self, root: str | None = None, filelist: str = "nyu_train_files.txt",
                 crop_size: Sequence[int] | int | None = None, augment: bool | None = None,
                 scale_range: Sequence[float] | None = (1.0, 1.5), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_depth: float | None = 10.0, depth_scale: float = 1000.0, scale_depth: bool = True,
                 num_samples: int | None = None, size: Sequence[int] | int = (96, 128)):
        if not depth_scale > 0:
            raise ValueError(f"depth_scale (PNG units per metre) must be > 0; got {depth_scale!r}")
        self.root = root
        self.filelist = str(filelist)
        self.stream = os.path.basename(self.filelist)
        self.size = _synthetic_size(size)
        n = 400 if num_samples is None else int(num_samples)
        if n < 1:
            raise ValueError(f"num_samples must be >= 1; got {num_samples!r}")
        self.num_samples = n
        self.depth_scale = float(depth_scale)
        self.augment = True if augment is None else bool(augment)
        self.max_depth = max_depth
        self.crop_size = _clamp_crop(crop_size, self.size)
        self.transform = NYUTransform(self.augment, self.crop_size, scale_range, flip, mean, std, max_depth,
                                      scale_depth=scale_depth)

    def __len__(self) -> int:
        return self.num_samples

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(H x W x 3 uint8, H x W float32 metres, 0 = missing), depth on the PNG's grid (1 / depth_scale m)."""
        r = self.render(index)
        png = np.clip(np.rint(r["raw_depth"].astype(np.float64) * self.depth_scale), 0, 65535).astype(np.uint16)
        return r["image"], png.astype(np.float32) / np.float32(self.depth_scale)

    @property
    def focals(self) -> list[float]:
        return [NYU_FOCAL * self.size[1] / NYU_FRAME[1]] * self.num_samples

    lut = None

    def sample_id(self, index: int) -> str:
        """``'<room kind>_<index // 4:04d>/rgb_<index:05d>'``: the RGB path :func:`write_raw_tree` writes, without
        its extension."""
        return f"{self.render(index)['kind']}_{index // 4:04d}/rgb_{index:05d}"

    def __getitem__(self, index: int) -> dict:
        image, depth = self.load(index)
        out = self.transform(image, depth)
        focal = NYU_FOCAL * self.size[1] / NYU_FRAME[1] * (1.0 if self.transform.scale_depth else out["scale"])
        return {"image": out["image"], "depth": out["depth"], "target": out["depth"], "index": int(index),
                "focal": float(focal)}

    @classmethod
    def write_tree(cls, root: str, n: int = 8, size: Sequence[int] = (96, 128), filelist: str = "nyu_train_files.txt",
                   image_ext: str = ".jpg") -> str:
        """Same as :func:`write_raw_tree`."""
        return write_raw_tree(root, n, size=size, filelist=filelist, image_ext=image_ext)

    def __repr__(self) -> str:
        return f"SyntheticNYUDepthRaw(stream={self.stream!r}, n={self.num_samples}, size={self.size})"


def write_raw_tree(root: str, n: int = 8, size: Sequence[int] = (96, 128), filelist: str = "nyu_train_files.txt",
                   image_ext: str = ".jpg", depth_scale: float = 1000.0) -> str:
    """Write ``n`` synthetic raw frames in the layout of the NYU raw sync data and a BTS-style file list:
    ``ROOT/<room>_<k>/rgb_<i>.jpg`` (or ``.png``), ``ROOT/<room>_<k>/sync_depth_<i>.png`` (uint16 millimetres,
    0 = missing) and ``ROOT/<filelist>`` with lines ``/<room>_<k>/rgb_<i>.jpg /<room>_<k>/sync_depth_<i>.png
    <focal>``. Frame ``i`` is ``SyntheticNYUDepthRaw(filelist=filelist, size=size).load(i)`` (up to JPEG
    compression of the RGB). Returns the path of the list."""
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png'; got {image_ext!r}")
    ds = SyntheticNYUDepthRaw(filelist=filelist, num_samples=n, size=size, augment=False, depth_scale=depth_scale)
    lines = []
    for i in range(n):
        r = ds.render(i)
        scene = ds.sample_id(i).split("/")[0]
        rgb_rel, dep_rel = f"{scene}/rgb_{i:05d}{image_ext}", f"{scene}/sync_depth_{i:05d}.png"
        _, depth = ds.load(i)
        write_image(os.path.join(root, rgb_rel), r["image"])
        png = np.rint(depth.astype(np.float64) * depth_scale).astype(np.uint16)
        write_image(os.path.join(root, dep_rel), png)
        lines.append(f"/{rgb_rel} /{dep_rel} {ds.focals[i]:.4f}")
    path = os.path.join(root, filelist)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path
