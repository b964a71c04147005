"""NYU-Depth v2 (Silberman et al., ECCV 2012): the labeled set (1449 frames: depth, 894 raw classes mapped to
NYU-40 / NYU-13) and the raw frames used for supervised depth training, with their real file formats.

Labeled set (``NYUDepthV2``), expected under ``root``::

    ROOT/nyu_depth_v2_labeled.mat   MATLAB v7.3 (= HDF5), read lazily with h5py
    ROOT/splits.mat                 MATLAB v5: trainNdxs (795 x 1), testNdxs (654 x 1), 1-based
    ROOT/classMapping40.mat         MATLAB v5: mapClass (1 x 894, values 0..40), className (1 x 40 cell)

h5py shows MATLAB's column-major arrays with their axes reversed: MATLAB's ``images`` (480 x 640 x 3 x 1449)
appear as ``(N, 3, W, H)`` = ``(1449, 3, 640, 480)``, ``depths`` / ``rawDepths`` / ``labels`` (480 x 640 x
1449) as ``(N, W, H)``. The loader transposes each sample back to ``H x W x 3`` / ``H x W``. ``depths`` are the
in-painted depth maps in metres (no holes), ``rawDepths`` the Kinect measurements projected onto the RGB frame
(0 = no measurement), ``labels`` uint16 raw class ids 1..894 with 0 = unlabeled.

Raw frames (``NYUDepthRaw``): a file list in the format of BTS / AdaBins (``nyudepthv2_train_files_with_gt.txt``)::

    /kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579

one ``rgb_path depth_path focal`` per line, paths relative to ``root`` (a leading ``/`` is stripped, as BTS joins
them to its data path), RGB as JPEG/PNG, depth as a single-channel uint16 PNG in millimetres (0 = missing).

Sample conventions (both datasets), see :class:`NYUTransform`:

* ``image``: 3 x H x W float32, normalised with ``mean``/``std`` (fractions of 255, ImageNet by default).
* ``depth``: 1 x H x W float32 metres, never normalised. **0 = no valid depth**: missing measurements (0 in
  the file, or non-finite), values above ``max_depth`` (``None`` keeps all) and padding all read 0, so
  ``depth > 0`` is the valid mask (the depth task and metrics use ``min_depth < depth <= max_depth``).
* ``label`` (labeled set only): H x W int64 train ids ``0..num_classes-1``, 255 = ignore (unlabeled, padding).
* ``target``: the ``label`` tensor (``target='label'``) or the ``depth`` tensor (``target='depth'``; always
  for ``NYUDepthRaw``).  ``index``: the sample's position in the dataset (int).  ``focal`` (raw frames only).

Augmentation (default on for ``split='train'``): the same geometry for image, depth and label -- random scale
``s`` in ``scale_range`` (image bilinear, depth and label nearest neighbour, so missing depth stays missing and
ids are never blended), pad (image 0, depth 0, label 255) and random ``crop_size`` crop, horizontal flip
(p = 0.5). **Depth values are divided by ``s``** (``scale_depth=True``): enlarging the image ``s`` times with
the focal length unchanged is what the camera would see with the scene ``s`` times closer, so the image and the
depth stay physically consistent (Eigen et al., NIPS 2014, "Scale: input and target images are scaled by s and
the depths are divided by s"). ``max_depth`` is applied to the measured value before the division. Crops and
flips leave depth values unchanged. ``scale_depth=False`` keeps metric values under scaling instead (then the
returned ``focal`` of raw frames is multiplied by ``s``, the focal length of the zoomed image).
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegEvalTransform, SegTrainTransform
from densekd.registry import DATASETS

try:  # albumentations ships opencv-python-headless
    import cv2
except ImportError:  # pragma: no cover - exercised only without OpenCV
    cv2 = None

IGNORE = 255
NYU_FOCAL = 518.8579  # fx (pixels) of the NYU Kinect RGB camera at 640 x 480, the focal of BTS's file lists
NYU_FRAME = (480, 640)
NUM_RAW_CLASSES = 894

#: NYU-40 classes (Gupta et al., CVPR 2013) in class-id order 1..40 (train ids 0..39), as ``className`` of
#: ``classMapping40.mat``, including its spelling 'refridgerator'.
CLASSES40: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes",
    "ceiling", "books", "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard",
    "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture",
    "otherprop",
)

#: NYU-13 classes (Couprie et al., ICLR 2013) in class-id order 1..13 (train ids 0..12).
CLASSES13: tuple[str, ...] = ("bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture",
                              "sofa", "table", "tv", "wall", "window")

#: NYU-40 class id (1..40) -> NYU-13 class id (1..13): the table of ``class13Mapping.mat`` (ankurhanda/
#: nyuv2-meta-data) / ``classMapping13.mat``; entry ``k - 1`` is the 13-class id of 40-class id ``k``.
MAP40_TO_13: tuple[int, ...] = (12, 5, 6, 1, 4, 9, 10, 12, 13, 6, 8, 6, 13, 10, 6, 13, 6, 7, 7, 5,
                                7, 3, 2, 6, 11, 7, 7, 7, 7, 7, 7, 6, 7, 7, 7, 7, 7, 7, 6, 7)


def voc_colormap(n: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map (bit-interleaved), entries 0..n-1 (entry 0 is black)."""
    out = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out.append((r, g, b))
    return out


#: Colours of the 40 (13) train ids: PASCAL VOC colour-map entries 1..40 (1..13), i.e. the colour of NYU class
#: id ``k`` is VOC entry ``k`` (entry 0, black, is left for unlabeled / ignore) -- the colouring of the common
#: NYUv2 extraction scripts.
PALETTE40: tuple[tuple[int, int, int], ...] = tuple(voc_colormap(41)[1:])
PALETTE13: tuple[tuple[int, int, int], ...] = tuple(voc_colormap(14)[1:])

LABELED_LAYOUT = (
    "ROOT/nyu_depth_v2_labeled.mat (MATLAB v7.3/HDF5 with datasets images (N, 3, W, H) uint8, depths (N, W, H) "
    "float metres, labels (N, W, H) uint16 as h5py shows MATLAB's H x W x 3 x N / H x W x N arrays), "
    "ROOT/splits.mat (MATLAB v5, trainNdxs 795 x 1 and testNdxs 654 x 1, 1-based) and "
    "ROOT/classMapping40.mat (MATLAB v5, mapClass 1 x 894 with values 0..40, className 1 x 40)")
RAW_LAYOUT = ("ROOT/<file list>, one 'rgb_path depth_path focal' per line (paths relative to ROOT, a leading '/' "
              "stripped), RGB JPEG/PNG files and single-channel uint16 depth PNGs in millimetres (0 = missing)")


# ---------------------------------------------------------------------------------------------- MATLAB files
def _resolve(root: str, path: str) -> str:
    path = os.path.expanduser(str(path))
    return path if os.path.isabs(path) else os.path.join(root, path)


def _h5py():
    import h5py

    return h5py


def _mat_string(value) -> str:
    """A MATLAB string as scipy.io or the v7.3 reader returns it (array of str / of char codes, or str)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    arr = np.asarray(value)
    if arr.dtype.kind in "US":
        return "".join(str(x) for x in arr.ravel())
    if arr.dtype == object:
        return "".join(_mat_string(x) for x in arr.ravel())
    return "".join(chr(int(c)) for c in arr.ravel())


def mat_strings(value) -> list[str]:
    """A MATLAB cell array of strings (any shape) as a list of str, in MATLAB's column-major order."""
    arr = np.asarray(value, dtype=object)
    return [_mat_string(x) for x in arr.ravel(order="F")]


def _read_v73(path: str) -> dict:
    """Top-level variables of a MATLAB v7.3 (HDF5) file, in MATLAB's axis order; cells of strings as object
    arrays of str. Used for the small files (splits, mappings), which are read whole."""
    h5py = _h5py()
    out = {}
    with h5py.File(path, "r") as f:
        for key, obj in f.items():
            if key.startswith("#") or not isinstance(obj, h5py.Dataset):
                continue
            data = obj[()]
            if obj.dtype.kind == "O" or h5py.check_dtype(ref=obj.dtype) is not None:
                cells = np.empty(data.shape, dtype=object)
                for i, ref in np.ndenumerate(data):
                    cells[i] = _mat_string(f[ref][()])
                out[key] = cells.T
            elif obj.attrs.get("MATLAB_class", b"") in (b"char", "char"):
                out[key] = _mat_string(data.T)
            else:
                out[key] = np.asarray(data).T
    return out


def read_mat(path: str, what: str, layout: str) -> dict:
    """Variables of a MATLAB file: v5 through ``scipy.io.loadmat``, v7.3 (HDF5) through h5py.

    Raises FileNotFoundError (naming ``what``, the path and the expected ``layout``) or ValueError for a file
    that is neither.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYU-Depth v2 {what} not found: {path!r}. Expected layout: {layout}. Nothing is "
                                f"downloaded automatically; or run with --synthetic")
    import scipy.io

    try:
        return scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3: HDF5
        return _read_v73(path)
    except Exception as exc:  # scipy raises ValueError / TypeError / MatReadError for other files
        h5py = _h5py()
        if h5py.is_hdf5(path):
            return _read_v73(path)
        raise ValueError(f"NYU-Depth v2 {what} {path!r} is not a MATLAB .mat file ({type(exc).__name__}: {exc}). "
                         f"Expected layout: {layout}") from exc


def _mat_key(mat: dict, key: str, path: str, what: str, layout: str):
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise KeyError(f"NYU-Depth v2 {what} {path!r} has no variable {key!r} (it has {keys}). Expected layout: "
                       f"{layout}")
    return mat[key]


def _as_index_vector(value, key: str, path: str, n_frames: int | None) -> np.ndarray:
    """A MATLAB 1-based index vector (column or row) -> 0-based int64 indices, validated."""
    arr = np.asarray(value)
    if arr.dtype == object or arr.size == 0 or sum(s > 1 for s in arr.shape) > 1:
        raise ValueError(f"{path!r}: {key} must be a non-empty vector of 1-based frame indices (MATLAB column "
                         f"vector, e.g. 795 x 1); got shape {arr.shape} dtype {arr.dtype}")
    flat = arr.astype(np.float64).ravel()
    if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)):
        raise ValueError(f"{path!r}: {key} must hold integer (1-based) frame indices")
    idx = flat.astype(np.int64)
    hi = n_frames if n_frames is not None else np.inf
    if idx.min() < 1 or idx.max() > hi:
        raise ValueError(f"{path!r}: {key} must hold 1-based frame indices in 1..{n_frames}; got values "
                         f"{idx.min()}..{idx.max()} (0-based indices? the official splits.mat is 1-based)")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{path!r}: {key} holds repeated frame indices")
    return idx - 1


def read_splits(path: str, n_frames: int | None = None) -> dict[str, np.ndarray]:
    """``splits.mat`` -> ``{'train': 0-based indices, 'test': 0-based indices}`` (from ``trainNdxs``/``testNdxs``)."""
    mat = read_mat(path, "split file", LABELED_LAYOUT)
    return {split: _as_index_vector(_mat_key(mat, key, path, "split file", LABELED_LAYOUT), key, path, n_frames)
            for split, key in (("train", "trainNdxs"), ("test", "testNdxs"))}


def read_class_mapping(path: str, keys: Sequence[str] = ("mapClass", "className")
                       ) -> tuple[np.ndarray, list[str] | None]:
    """A class-mapping file -> (``mapClass`` as int64 vector, raw id ``k`` at entry ``k - 1``; class names or
    None when the names key is absent). ``keys = (mapping key, names key)``."""
    layout = f"a MATLAB file with {keys[0]} (1 x 894: new class id for each raw id 1..894, 0 = unlabeled) and " \
             f"{keys[1]} (1 x C cell of names), such as classMapping40.mat"
    mat = read_mat(path, "class-mapping file", layout)
    raw = np.asarray(_mat_key(mat, keys[0], path, "class-mapping file", layout))
    if raw.dtype == object or raw.size == 0 or sum(s > 1 for s in raw.shape) > 1:
        raise ValueError(f"{path!r}: {keys[0]} must be a 1 x {NUM_RAW_CLASSES} vector (new class id of each raw "
                         f"label id); got shape {raw.shape} dtype {raw.dtype}")
    flat = raw.astype(np.float64).ravel()
    if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)) or flat.min() < 0:
        raise ValueError(f"{path!r}: {keys[0]} must hold non-negative integer class ids")
    names = mat_strings(mat[keys[1]]) if len(keys) > 1 and keys[1] in mat else None
    return flat.astype(np.int64), names


def read_map40to13(path: str) -> tuple[np.ndarray, list[str] | None]:
    """``class13Mapping.mat`` (ankurhanda/nyuv2-meta-data): struct ``classMapping13`` whose first field is the
    1 x 40 table 40-class id -> 13-class id and whose second field (when present) the 13 names."""
    layout = "a MATLAB file with a struct classMapping13 (fields: the 1 x 40 mapping 40 -> 13, the 13 class names)"
    mat = read_mat(path, "13-class mapping file", layout)
    s = np.asarray(_mat_key(mat, "classMapping13", path, "13-class mapping file", layout))
    if s.dtype.names is None or s.size != 1:
        raise ValueError(f"{path!r}: classMapping13 must be a MATLAB struct; got {s.dtype} of shape {s.shape}. "
                         f"Expected: {layout}")
    s = s.ravel()[0]
    table = np.asarray(s[0]).astype(np.float64).ravel()
    if table.size != 40 or np.any(table != np.round(table)) or table.min() < 0 or table.max() > 13:
        raise ValueError(f"{path!r}: classMapping13.{s.dtype.names[0]} must be 40 class ids in 0..13; got "
                         f"{table.size} values in {table.min() if table.size else None}.."
                         f"{table.max() if table.size else None}")
    names = mat_strings(s[1]) if len(s.dtype.names) > 1 else None
    return table.astype(np.int64), names


def label_lut(map_class: Sequence[int], num_classes: int, map40to13: Sequence[int] | None = None,
              ignore_index: int = IGNORE) -> np.ndarray:
    """Look-up table raw label id -> train id: entry 0 (unlabeled) -> ``ignore_index``, entry ``k`` ->
    ``map_class[k-1] - 1`` (a mapped id 0 -> ``ignore_index``). With ``map40to13`` the 40-class ids go through
    that table first (40-class id ``c`` -> ``map40to13[c-1]``). Values must fit ``1..num_classes``."""
    ids = np.asarray(map_class, dtype=np.int64).ravel()
    if map40to13 is not None:
        table = np.concatenate([[0], np.asarray(map40to13, dtype=np.int64).ravel()])
        if ids.max(initial=0) >= len(table):
            raise ValueError(f"the class mapping has ids up to {ids.max()}, but the 40 -> 13 table covers 1..40")
        ids = table[ids]
    if ids.max(initial=0) > num_classes:
        raise ValueError(f"the class mapping has class ids up to {ids.max()} but num_classes={num_classes}: "
                         f"wrong mapping file for this number of classes?")
    lut = np.full(len(ids) + 1, ignore_index, dtype=np.int64)
    lut[1:] = np.where(ids >= 1, ids - 1, ignore_index)
    return lut.astype(np.uint8 if 0 <= ignore_index <= 255 else np.int64)


def map_labels(raw: np.ndarray, lut: np.ndarray, where: str = "") -> np.ndarray:
    """Raw label ids (H x W) -> train ids through ``lut``; ids beyond the table are an error."""
    raw = np.asarray(raw)
    top = int(raw.max(initial=0))
    if top >= len(lut) or int(raw.min(initial=0)) < 0:
        raise ValueError(f"label ids {int(raw.min(initial=0))}..{top}{where} are outside the class mapping "
                         f"(raw ids 0..{len(lut) - 1}, 0 = unlabeled)")
    return lut[raw.astype(np.int64)]


# ---------------------------------------------------------------------------------------------- transforms
def valid_depth(depth: np.ndarray, max_depth: float | None) -> np.ndarray:
    """float32 copy of ``depth`` with 0 where it is not a valid measurement: non-finite, <= 0 or > max_depth."""
    d = np.asarray(depth, dtype=np.float32).copy()
    bad = ~np.isfinite(d) | (d <= 0)
    if max_depth is not None:
        bad |= d > max_depth
    d[bad] = 0.0
    return d


def _pack_hha(hha: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 -> one H x W float32 channel ``65536 h + 256 h' + a`` (below 2 ** 24, so float32 holds it
    exactly), so HHA rides the geometry pipeline as a single nearest-neighbour extra (OpenCV pads at most four
    channels with their own values)."""
    h = hha.astype(np.int64)
    return (h[:, :, 0] * 65536 + h[:, :, 1] * 256 + h[:, :, 2]).astype(np.float32)


def _unpack_hha(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_pack_hha`: h x w float -> 3 x h x w float (0..255)."""
    v = packed.round().long()
    return torch.stack([v // 65536, (v // 256) % 256, v % 256]).float()


_NEAREST = getattr(cv2, "INTER_NEAREST_EXACT", getattr(cv2, "INTER_NEAREST", 0)) if cv2 is not None else 0


class NYUTransform:
    """Joint transform of (image, depth[, label]) for NYU (see the module docstring for the conventions).

    Call: ``t(image H x W x 3 uint8, depth H x W float metres, label H x W ints or None, hha H x W x 3 uint8 or
    None)`` -> ``{'image': 3 x h x w float, 'depth': 1 x h x w float32, 'label': h x w int64 (if a label was
    given), 'hha': 3 x h x w float (if HHA was given: ``(x / 255 - hha_mean) / hha_std``, ImageNet statistics
    by default, as HHA networks start from RGB architectures), 'scale': the scale factor applied (1.0 without
    scaling)}``. HHA goes through the depth's geometry (nearest neighbour, padding 0) and, like the image, keeps
    its values when the frame is scaled (it is not recomputed for the zoomed scene).

    Training (``augment=True``): the scale factor ``s ~ U(scale_range)`` is one draw from the *global* numpy
    RNG, then pad / crop / flip run through :class:`~densekd.data.transforms.SegTrainTransform` (re-seeded from
    the global numpy RNG), so the loader's per-sample seeding makes every augmentation reproducible.
    Resizing uses cv2's centre-aligned nearest neighbour (``INTER_NEAREST_EXACT``) for depth and label, the
    same pixel grid as the bilinear image resize. Evaluation (``augment=False``): the full frame, normalised
    only (``crop_size`` and ``scale_range`` are ignored); ``max_depth`` applies in both modes.
    """

    def __init__(self, augment: bool, crop_size=None, scale_range: Sequence[float] | None = (1.0, 1.5),
                 flip: bool = True, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_depth: float | None = 10.0, label_fill: int = IGNORE, scale_depth: bool = True,
                 hha_mean: Sequence[float] = IMAGENET_MEAN, hha_std: Sequence[float] = IMAGENET_STD):
        if len(hha_mean) != 3 or len(hha_std) != 3 or min(hha_std) <= 0:
            raise ValueError(f"hha_mean and hha_std must be 3 values (std > 0) as fractions of 255; got {hha_mean}, "
                             f"{hha_std}")
        self.hha_mean = torch.tensor([float(m) for m in hha_mean])
        self.hha_std = torch.tensor([float(v) for v in hha_std])
        if max_depth is not None and not max_depth > 0:
            raise ValueError(f"max_depth must be > 0 metres (or None for no limit); got {max_depth!r}")
        if scale_range is not None:
            scale_range = tuple(float(s) for s in scale_range)
            if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high; got {scale_range!r}")
        self.augment = bool(augment)
        self.scale_range = scale_range if self.augment else None
        self.max_depth = None if max_depth is None else float(max_depth)
        self.scale_depth = bool(scale_depth)
        self.label_fill = int(label_fill)
        if self.augment:
            self.geometry = SegTrainTransform(crop_size=crop_size, scale_range=None, flip=flip, photometric=False,
                                              mean=mean, std=std, ignore_index=self.label_fill,
                                              extra_fill={"depth": 0.0, "hha": 0.0})
        else:
            self.geometry = SegEvalTransform(mean=mean, std=std)

    def __call__(self, image: np.ndarray, depth: np.ndarray, label: np.ndarray | None = None,
                 hha: np.ndarray | None = None) -> dict:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be H x W x 3 uint8; got {image.shape} {image.dtype}")
        depth = valid_depth(depth, self.max_depth)
        if depth.shape != image.shape[:2]:
            raise ValueError(f"depth is {depth.shape} but the image is {image.shape[:2]}")
        has_label = label is not None
        lab = np.asarray(label) if has_label else np.zeros(image.shape[:2], dtype=np.uint8)
        if lab.shape != image.shape[:2]:
            raise ValueError(f"label is {lab.shape} but the image is {image.shape[:2]}")
        if hha is not None:
            hha = np.asarray(hha)
            if hha.shape != image.shape or hha.dtype != np.uint8:
                raise ValueError(f"hha must be H x W x 3 uint8 on the image's grid {image.shape}; got {hha.shape} "
                                 f"{hha.dtype}")
        s = 1.0
        if self.scale_range is not None and self.scale_range != (1.0, 1.0):
            s = float(np.random.uniform(*self.scale_range))
            h, w = image.shape[:2]
            size = (max(int(round(w * s)), 1), max(int(round(h * s)), 1))  # cv2: (width, height)
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(depth, size, interpolation=_NEAREST)
            lab = cv2.resize(lab.astype(np.uint16 if lab.max(initial=0) > 255 else np.uint8), size,
                             interpolation=_NEAREST)
            if hha is not None:
                hha = cv2.resize(hha, size, interpolation=_NEAREST)
            if self.scale_depth:
                depth = depth / np.float32(s)
        extras = {"depth": depth}
        if hha is not None:  # same geometry as the image, nearest-neighbour like the depth it encodes
            extras["hha"] = _pack_hha(hha)
        out = self.geometry(image, lab, **extras)
        sample = {"image": out["image"], "depth": out["depth"].unsqueeze(0), "scale": s}
        if hha is not None:
            raw = _unpack_hha(out["hha"])
            sample["hha"] = (raw / 255.0 - self.hha_mean[:, None, None]) / self.hha_std[:, None, None]
        if has_label:
            sample["label"] = out["target"]
        return sample

    def __repr__(self) -> str:
        return (f"NYUTransform(augment={self.augment}, scale_range={self.scale_range}, max_depth={self.max_depth}, "
                f"scale_depth={self.scale_depth}, geometry={self.geometry!r})")


HHA_PATTERN = "{frame:04d}.png"


def hha_path(folder: str, pattern: str, j: int) -> str:
    """The HHA file of frame ``j`` (0-based in the labeled file): ``pattern`` with ``frame`` = j + 1, ``index`` = j."""
    try:
        return os.path.join(folder, pattern.format(frame=j + 1, index=j))
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"hha_pattern {pattern!r} is not a valid pattern ({exc}); use fields {{frame}} (1-based) "
                         f"or {{index}} (0-based), e.g. '{HHA_PATTERN}'") from None


def _check_hha_dir(folder: str, pattern: str, frames: list[int]) -> None:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"HHA folder not found: {folder!r}. Write it with `python tools/make_hha.py ROOT` "
                                f"(densekd's HHA encoding), put your own HHA PNGs there (named {pattern!r}, frame = "
                                f"1-based frame number), or set hha='compute'")
    for j in frames:
        path = hha_path(folder, pattern, j)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"HHA image not found: {path!r} (frame {j + 1}; hha_pattern {pattern!r}). Write "
                                    f"them with `python tools/make_hha.py ROOT`, or set hha_pattern to your files' "
                                    f"naming, or set hha='compute'")


def _check_target(target: str) -> str:
    if target not in ("label", "depth"):
        raise ValueError(f"target must be 'label' (semantic segmentation) or 'depth'; got {target!r}")
    return target


# ---------------------------------------------------------------------------------------------- results
def depth_to_png(depth: np.ndarray, scale: float = 1000.0) -> np.ndarray:
    """Depth in metres -> uint16 PNG values ``round(depth * scale)`` (``scale=1000``: millimetres, the format of
    NYU's depth PNGs): 0 = invalid (non-finite or <= 0), valid depths clipped to 1..65535."""
    d = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    out = np.zeros(d.shape, dtype=np.uint16)
    out[valid] = np.clip(np.rint(d[valid] * scale), 1, 65535).astype(np.uint16)
    return out


class NYUResults:
    """Benchmark-format predictions of the NYU datasets (``tools/test.py --format-only``): sample ``i``'s depth as
    ``depth/<sample_id>.png``, single-channel uint16 in millimetres (``depth_scale`` units per metre, 1000 by
    default; 0 = invalid), the format of NYU's raw depth PNGs; its label map as ``label/<sample_id>.png``,
    uint8 class ids 1..C (train id + 1: NYU-40 / NYU-13 class ids, 0 = unlabeled; raw ids as uint16 when the
    dataset keeps them). Subclasses define :meth:`sample_id` and ``lut`` (None: raw ids)."""

    result_kinds = ("depth", "label")

    def sample_id(self, index: int) -> str:
        raise NotImplementedError

    def result_path(self, index: int, kind: str) -> str:
        if kind not in self.result_kinds:
            raise ValueError(f"{type(self).__name__} writes {', '.join(self.result_kinds)} results, not {kind!r}")
        return f"{kind}/{self.sample_id(index)}.png"

    def encode_result(self, kind: str, result: np.ndarray) -> np.ndarray:
        if kind == "depth":
            return depth_to_png(result, float(getattr(self, "depth_scale", 1000.0)))
        if kind == "label":
            ids = np.asarray(result).astype(np.int64)
            if getattr(self, "lut", None) is None:  # raw ids
                return ids.clip(0, 65535).astype(np.uint16)
            return np.where((ids >= 0) & (ids < 255), ids + 1, 0).astype(np.uint8)
        raise ValueError(f"{type(self).__name__} writes {', '.join(self.result_kinds)} results, not {kind!r}")


# ---------------------------------------------------------------------------------------------- labeled set
@DATASETS.register()
class NYUDepthV2(NYUResults, Dataset):
    """The NYU-Depth v2 labeled set with the official 795 / 654 split (see the module docstring for the files
    and the sample conventions).

    Args:
        root: folder holding the files below (relative file names are resolved against it).
        split: ``'train'`` (``trainNdxs``, 795 frames) or ``'test'`` (``testNdxs``, 654 frames).
        mat_file, splits_file: the labeled ``.mat`` (v7.3/HDF5) and the split file (MATLAB v5 or v7.3).
        mapping_file: raw 894 ids -> classes (``classMapping40.mat``); ``None`` keeps the raw ids (label =
            raw id 0..894 with 0 = unlabeled, nothing mapped to 255; padding is 0; ``class_names`` are the
            labeled file's ``names`` when it has them).
        mapping_keys: (mapping variable, names variable) of the mapping file.
        num_classes: 40 (NYU-40), or 13 (NYU-13): a mapping file whose ids are already 1..13 (e.g.
            ``classMapping13.mat`` with ``mapClass`` 1 x 894) is used as it is, a 40-class one is followed by
            the 40 -> 13 table of ``mapping13_file`` (``class13Mapping.mat``) or, without one, by the built-in
            :data:`MAP40_TO_13`.
        crop_size, augment (default: on for ``'train'``), scale_range, flip, mean, std, max_depth,
        scale_depth: see :class:`NYUTransform`.
        target: ``'label'`` or ``'depth'``: what ``sample['target']`` is.
        depth_key: ``'depths'`` (in-painted, default) or ``'rawDepths'`` (Kinect measurements with holes).
        hha: ``None`` (no HHA), a folder of HHA PNGs (relative to ``root``; one 3-channel 8-bit image per frame,
            named by ``hha_pattern``), or ``'compute'``: :func:`~densekd.data.hha.depth_to_hha` of the frame's
            in-painted ``depths`` with NYU's intrinsics, on the fly (``tools/make_hha.py ROOT`` writes the same
            images once). Samples then have ``hha`` (3 x h x w, the image's geometry; see :class:`NYUTransform`).
        hha_pattern: file name of frame ``frame`` (1-based position in the labeled file, as MATLAB counts;
            ``index`` is the 0-based one), default ``'{frame:04d}.png'``.
        hha_mean, hha_std: normalisation of the HHA channels (fractions of 255), default ImageNet's.

    The h5py handle is opened on first access in each process (the pid is remembered, a forked DataLoader
    worker opens its own) and every read indexes a single frame; the file is never read whole.
    Metadata: ``class_names`` (:data:`CLASSES40`, or the mapping file's names), ``palette`` (:data:`PALETTE40`).
    """

    load_keys = ('image', 'depth', 'label')  # what load(index) returns, in order

    CLASSES = CLASSES40
    PALETTE = PALETTE40
    class_names = list(CLASSES40)
    palette = list(PALETTE40)
    num_classes = len(CLASSES40)
    synthetic = "SyntheticNYUDepthV2"

    def __init__(self, root: str, split: str = "train", mat_file: str = "nyu_depth_v2_labeled.mat",
                 splits_file: str = "splits.mat", mapping_file: str | None = "classMapping40.mat",
                 num_classes: int = 40, crop_size: Sequence[int] | int | None = None, augment: bool | None = None,
                 scale_range: Sequence[float] | None = (1.0, 1.5), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_depth: float | None = 10.0, target: str = "label",
                 mapping_keys: Sequence[str] = ("mapClass", "className"), mapping13_file: str | None = None,
                 depth_key: str = "depths", scale_depth: bool = True, hha: str | None = None,
                 hha_pattern: str = HHA_PATTERN, hha_mean: Sequence[float] = IMAGENET_MEAN,
                 hha_std: Sequence[float] = IMAGENET_STD):
        if root is None:
            raise FileNotFoundError(f"NYUDepthV2 needs root=PATH (use --data-root), laid out as {LABELED_LAYOUT}; "
                                    f"or run with --synthetic to use SyntheticNYUDepthV2")
        if split not in ("train", "test"):
            raise ValueError(f"NYU-Depth v2 split must be 'train' or 'test' (splits.mat's trainNdxs / testNdxs); "
                             f"got {split!r}")
        self.root = os.path.expanduser(str(root))
        self.split = split
        self.target = _check_target(target)
        self.depth_key = depth_key
        self.mat_path = _resolve(self.root, mat_file)
        self.n_frames, self.frame_size = self._check_labeled_file()
        self.splits_path = _resolve(self.root, splits_file)
        self.frames = read_splits(self.splits_path, self.n_frames)[split]
        self._setup_labels(mapping_file, num_classes, tuple(mapping_keys), mapping13_file)
        augment = split == "train" if augment is None else bool(augment)
        self.augment = augment
        self.max_depth = max_depth
        self.transform = NYUTransform(augment, crop_size, scale_range, flip, mean, std, max_depth,
                                      label_fill=self.label_fill, scale_depth=scale_depth, hha_mean=hha_mean,
                                      hha_std=hha_std)
        self.hha = hha
        self.hha_pattern = hha_pattern
        self.hha_dir = None if hha in (None, "compute") else _resolve(self.root, hha)
        if self.hha_dir is not None:
            _check_hha_dir(self.hha_dir, hha_pattern, [int(j) for j in self.frames[:1]])
        self._handle = None
        self._handle_pid = None

    # -- files --------------------------------------------------------------------------------------------
    def _check_labeled_file(self) -> tuple[int, tuple[int, int]]:
        path = self.mat_path
        if not os.path.isfile(path):
            what = "root" if not os.path.isdir(self.root) else "labeled file"
            raise FileNotFoundError(
                f"NYU-Depth v2 {what} not found: {path!r} does not exist. Expected layout: {LABELED_LAYOUT}. "
                f"Download nyu_depth_v2_labeled.mat from the NYU-Depth v2 page and splits.mat / classMapping40.mat "
                f"(e.g. from the NYU toolbox / nyuv2-meta-data) into ROOT (nothing is downloaded automatically); or "
                f"run with --synthetic")
        h5py = _h5py()
        if not h5py.is_hdf5(path):
            raise ValueError(f"{path!r} is not an HDF5 file: nyu_depth_v2_labeled.mat is a MATLAB v7.3 file (HDF5). "
                             f"Expected layout: {LABELED_LAYOUT}")
        with h5py.File(path, "r") as f:
            for key in ("images", self.depth_key, "labels"):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise KeyError(f"{path!r} has no dataset {key!r} (it has {sorted(f.keys())}). Expected layout: "
                                   f"{LABELED_LAYOUT}")
            im, dp, lb = f["images"], f[self.depth_key], f["labels"]
            if im.ndim != 4 or im.shape[1] != 3:
                hint = (" (that looks like N x H x W x 3: the file must keep MATLAB's layout, which h5py shows "
                        "reversed as (N, 3, W, H))" if im.ndim == 4 and im.shape[-1] == 3 else "")
                raise ValueError(f"{path!r}: dataset 'images' has shape {im.shape}; expected (N, 3, W, H), e.g. "
                                 f"(1449, 3, 640, 480){hint}. Expected layout: {LABELED_LAYOUT}")
            if im.dtype != np.uint8:
                raise ValueError(f"{path!r}: dataset 'images' has dtype {im.dtype}; expected uint8")
            n, _, w, h = im.shape
            for key, ds in ((self.depth_key, dp), ("labels", lb)):
                if ds.shape != (n, w, h):
                    raise ValueError(f"{path!r}: dataset {key!r} has shape {ds.shape}; expected (N, W, H) = "
                                     f"{(n, w, h)} to match 'images' {im.shape} (h5py shows MATLAB's H x W x N "
                                     f"reversed). Expected layout: {LABELED_LAYOUT}")
            if dp.dtype.kind != "f":
                raise ValueError(f"{path!r}: dataset {self.depth_key!r} has dtype {dp.dtype}; expected float metres")
            if lb.dtype.kind not in "ui":
                raise ValueError(f"{path!r}: dataset 'labels' has dtype {lb.dtype}; expected uint16 class ids")
            self._file_names = mat_strings_h5(f, "names") if "names" in f else None
        return n, (h, w)

    def _setup_labels(self, mapping_file, num_classes: int, keys: tuple, mapping13_file) -> None:
        self.mapping_path = None if mapping_file is None else _resolve(self.root, mapping_file)
        if self.mapping_path is None:
            self.lut = None
            self.label_fill = 0
            self.num_classes = len(self._file_names) if self._file_names else NUM_RAW_CLASSES
            self.class_names = list(self._file_names) if self._file_names else None
            self.palette = None
            return
        if num_classes not in (40, 13):
            raise ValueError(f"num_classes must be 40 (NYU-40) or 13 (NYU-13); got {num_classes!r}")
        map_class, names = read_class_mapping(self.mapping_path, keys)
        table = None
        if num_classes == 13 and map_class.max(initial=0) > 13:
            if mapping13_file is not None:
                table, names13 = read_map40to13(_resolve(self.root, mapping13_file))
            else:
                table, names13 = np.asarray(MAP40_TO_13), None
            names = names13
        self.lut = label_lut(map_class, num_classes, table)
        self.label_fill = IGNORE
        self.num_classes = num_classes
        default = CLASSES40 if num_classes == 40 else CLASSES13
        self.class_names = list(names) if names is not None and len(names) == num_classes else list(default)
        self.palette = list(PALETTE40 if num_classes == 40 else PALETTE13)

    def _h5(self):
        """This process's read-only handle (opened on first use; a forked worker opens its own)."""
        pid = os.getpid()
        if self._handle is None or self._handle_pid != pid:
            self._handle = _h5py().File(self.mat_path, "r")  # never close a handle inherited from the parent
            self._handle_pid = pid
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._handle_pid == os.getpid():
            self._handle.close()
        self._handle, self._handle_pid = None, None

    def __getstate__(self):  # pickled to spawned workers without the open handle
        state = self.__dict__.copy()
        state["_handle"], state["_handle_pid"] = None, None
        return state

    # -- samples ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw sample ``index`` of the split: (H x W x 3 uint8 RGB, H x W float32 depth in metres as stored
        (non-finite -> 0; ``max_depth`` is applied in ``__getitem__``), H x W labels: uint8 train ids with 255 =
        ignore, or the raw uint16 ids when ``mapping_file=None``)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"NYUDepthV2 {self.split} index {index} out of range for {len(self)} frames")
        j = int(self.frames[index])
        f = self._h5()
        image = np.ascontiguousarray(f["images"][j].transpose(2, 1, 0))
        depth = np.ascontiguousarray(f[self.depth_key][j].T, dtype=np.float32)
        depth[~np.isfinite(depth)] = 0.0
        raw = np.ascontiguousarray(f["labels"][j].T)
        where = f" in frame {j + 1} (1-based) of {self.mat_path!r}"
        label = raw.astype(np.uint16) if self.lut is None else map_labels(raw, self.lut, where)
        return image, depth, label

    def sample_id(self, index: int) -> str:
        """The frame's 1-based number in the labeled file, 4 digits (``'0001'``; as the HHA files are named)."""
        return f"{int(self.frames[index]) + 1:04d}"

    def load_hha(self, index: int) -> np.ndarray:
        """HHA of sample ``index`` (H x W x 3 uint8): read from ``hha`` (a folder) or computed from ``depths``."""
        j = int(self.frames[index])
        if self.hha_dir is None:
            from densekd.data.hha import NYU_INTRINSICS, depth_to_hha, scaled_intrinsics

            depth = np.ascontiguousarray(self._h5()["depths"][j].T, dtype=np.float32)
            return depth_to_hha(depth, scaled_intrinsics(NYU_INTRINSICS, depth.shape))
        from densekd.data.hha import read_hha

        return read_hha(hha_path(self.hha_dir, self.hha_pattern, j), self.frame_size)

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

    def __repr__(self) -> str:
        return (f"NYUDepthV2(root={self.root!r}, split={self.split!r}, n={len(self)}, target={self.target!r}, "
                f"num_classes={self.num_classes}, augment={self.augment})")


def write_hha_folder(root: str, mat_file: str = "nyu_depth_v2_labeled.mat", out: str = "hha",
                     pattern: str = HHA_PATTERN, depth_key: str = "depths", overwrite: bool = False,
                     progress: bool = True) -> tuple[str, int]:
    """Compute :func:`~densekd.data.hha.depth_to_hha` (NYU's intrinsics) of every frame's ``depth_key`` in the
    labeled file and write it as ``ROOT/out/<pattern>`` (what ``NYUDepthV2(hha=out)`` reads). Frames whose file
    exists are kept unless ``overwrite``. Returns (folder, number of files written)."""
    from tqdm import tqdm

    from densekd.data.hha import NYU_INTRINSICS, depth_to_hha, scaled_intrinsics, write_hha

    root = os.path.expanduser(str(root))
    path = _resolve(root, mat_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"NYU-Depth v2 labeled file not found: {path!r}. Expected layout: {LABELED_LAYOUT}")
    folder = _resolve(root, out)
    written = 0
    with _h5py().File(path, "r") as f:
        if depth_key not in f:
            raise KeyError(f"{path!r} has no dataset {depth_key!r} (it has {sorted(f.keys())})")
        depths = f[depth_key]
        for j in tqdm(range(depths.shape[0]), desc="HHA", disable=not progress):
            target = hha_path(folder, pattern, j)
            if os.path.isfile(target) and not overwrite:
                continue
            depth = np.ascontiguousarray(depths[j].T, dtype=np.float32)
            write_hha(target, depth_to_hha(depth, scaled_intrinsics(NYU_INTRINSICS, depth.shape)))
            written += 1
    return folder, written


def mat_strings_h5(f, key: str) -> list[str] | None:
    """A v7.3 cell array of strings (dataset of object references, e.g. the labeled file's ``names``)."""
    h5py = _h5py()
    ds = f[key]
    if h5py.check_dtype(ref=ds.dtype) is None:
        return None
    refs = ds[()]
    return [_mat_string(f[r][()]) for r in refs.T.ravel(order="F")]


# ---------------------------------------------------------------------------------------------- raw frames
def read_rgb(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"could not decode image {path!r} (corrupt, or not a JPEG/PNG?)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png(path: str, where: str = "") -> np.ndarray:
    """A single-channel uint16 depth PNG (millimetres) as the uint16 array; any other type is an error."""
    d = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if d is None:
        raise OSError(f"could not decode depth PNG {path!r}{where}")
    if d.dtype != np.uint16 or d.ndim != 2:
        raise ValueError(f"depth PNG {path!r}{where} is {d.dtype} with shape {d.shape}; expected a single-channel "
                         f"uint16 PNG in millimetres (0 = missing), as the NYU raw sync depth files")
    return d


def write_image(path: str, arr: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
    if not cv2.imwrite(path, data):
        raise OSError(f"could not write {path!r}")


def parse_filelist(path: str, root: str) -> list[tuple[str, str, float, int]]:
    """Lines ``rgb_path depth_path focal`` -> [(rgb file, depth file, focal, line number)], paths joined to
    ``root``.

    Blank lines and lines starting with ``#`` are skipped. A malformed line is a ValueError naming the file and
    the line number.
    """
    if not os.path.isfile(path):
        what = "root" if not os.path.isdir(root) else "file list"
        raise FileNotFoundError(f"NYU raw-frame {what} not found: {path!r}. Expected layout: {RAW_LAYOUT}")
    entries = []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            parts = text.split()
            if len(parts) != 3:
                raise ValueError(f"{path}:{lineno}: expected 'rgb_path depth_path focal', got {len(parts)} "
                                 f"field(s): {text!r}")
            if parts[1].lower() == "none":
                raise ValueError(f"{path}:{lineno}: the depth entry is 'None' (a frame without ground truth); "
                                 f"depth training needs a depth PNG on every line")
            try:
                focal = float(parts[2])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: focal {parts[2]!r} is not a number") from None
            if not focal > 0:
                raise ValueError(f"{path}:{lineno}: focal must be > 0 pixels; got {focal}")
            rgb, dep = (os.path.join(root, p.lstrip("/")) for p in parts[:2])
            entries.append((rgb, dep, focal, lineno))
    if not entries:
        raise ValueError(f"{path}: the file list has no entries. Expected layout: {RAW_LAYOUT}")
    return entries


@DATASETS.register()
class NYUDepthRaw(NYUResults, Dataset):
    """NYU-Depth v2 raw frames for supervised depth training (the file list of BTS / AdaBins: about 24k
    frames from the training scenes), see the module docstring for the format and conventions.

    Sample: ``{'image', 'depth', 'target' (= depth), 'index', 'focal'}``. ``focal`` is the list's value (pixels)
    -- times ``s`` under scale augmentation with ``scale_depth=False``.

    Args:
        root: the folder the list's paths are relative to.
        filelist: the list file (relative to ``root`` unless absolute).
        crop_size, scale_range, flip, mean, std, max_depth, scale_depth: see :class:`NYUTransform`.
        augment: default True (raw frames are training data); pass False to evaluate on a list.
        depth_scale: PNG value per metre (1000: millimetres).

    Every listed file is checked at construction; a missing one is a FileNotFoundError naming it and its line.
    """

    load_keys = ('image', 'depth')  # what load(index) returns, in order

    synthetic = "SyntheticNYUDepthRaw"

    def __init__(self, root: str, filelist: str = "nyu_train_files.txt", crop_size: Sequence[int] | int | None = None,
                 augment: bool | None = None, scale_range: Sequence[float] | None = (1.0, 1.5), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 max_depth: float | None = 10.0, depth_scale: float = 1000.0, scale_depth: bool = True):
        if root is None:
            raise FileNotFoundError(f"NYUDepthRaw needs root=PATH (use --data-root), laid out as {RAW_LAYOUT}; or "
                                    f"run with --synthetic to use SyntheticNYUDepthRaw")
        if not depth_scale > 0:
            raise ValueError(f"depth_scale (PNG units per metre) must be > 0; got {depth_scale!r}")
        self.root = os.path.expanduser(str(root))
        self.filelist = _resolve(self.root, filelist)
        entries = parse_filelist(self.filelist, self.root)
        for rgb, dep, _, lineno in entries:
            for kind, p in (("RGB image", rgb), ("depth PNG", dep)):
                if not os.path.isfile(p):
                    raise FileNotFoundError(f"{self.filelist}:{lineno}: {kind} {p!r} not found. Expected layout: "
                                            f"{RAW_LAYOUT}")
        self.images = [e[0] for e in entries]
        self.depths = [e[1] for e in entries]
        self.focals = [e[2] for e in entries]
        self._lines = [e[3] for e in entries]
        self.depth_scale = float(depth_scale)
        self.augment = True if augment is None else bool(augment)
        self.max_depth = max_depth
        self.transform = NYUTransform(self.augment, crop_size, scale_range, flip, mean, std, max_depth,
                                      scale_depth=scale_depth)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw frame ``index``: (H x W x 3 uint8 RGB, H x W float32 depth in metres, 0 = missing)."""
        where = f" ({self.filelist}:{self._lines[index]})"
        image = read_rgb(self.images[index])
        depth = read_depth_png(self.depths[index], where).astype(np.float32) / np.float32(self.depth_scale)
        if depth.shape != image.shape[:2]:
            raise ValueError(f"depth {self.depths[index]!r} is {depth.shape} but image {self.images[index]!r} is "
                             f"{image.shape[:2]}{where}")
        return image, depth

    lut = None

    def sample_id(self, index: int) -> str:
        """The RGB file's path relative to ``root`` without its extension (``'kitchen_0028b/rgb_00045'``)."""
        return os.path.splitext(os.path.relpath(self.images[index], self.root))[0]

    def __getitem__(self, index: int) -> dict:
        image, depth = self.load(index)
        out = self.transform(image, depth)
        focal = self.focals[index] * (1.0 if self.transform.scale_depth else out["scale"])
        return {"image": out["image"], "depth": out["depth"], "target": out["depth"], "index": int(index),
                "focal": float(focal)}

    def __repr__(self) -> str:
        return f"NYUDepthRaw(root={self.root!r}, filelist={self.filelist!r}, n={len(self)}, augment={self.augment})"


def __getattr__(name: str):
    # ``from densekd.data.nyu import SyntheticNYUDepthV2`` works; resolved lazily because
    # densekd.data.synthetic_nyu imports this module.
    if name in ("SyntheticNYUDepthV2", "SyntheticNYUDepthRaw"):
        from densekd.data import synthetic_nyu

        return getattr(synthetic_nyu, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
