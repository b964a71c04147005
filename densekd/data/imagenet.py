"""ImageNet (ILSVRC-2012 classification: 1000 classes, 1,281,167 training and 50,000 validation JPEGs) from its
folder tree, with a cached file index and the standard augmentation.

Layouts read under ``root`` (``root`` may also hold Kaggle's ``ILSVRC/Data/CLS-LOC/`` folder)::

    train/<wnid>/*.JPEG                          one folder per class (as extracted from ILSVRC2012_img_train.tar
                                                 and its 1000 class tars, or Kaggle's CLS-LOC/train)
    val/<wnid>/*.JPEG                            validation sorted into class folders (the usual preparation), or
    val/ILSVRC2012_val_00000001.JPEG ...         the official flat folder of 50,000 JPEGs, labelled by one of
      LOC_val_solution.csv                       Kaggle's 'ImageId,PredictionString' (the string starts with
                                                 the wnid), next to val/, the tree or ROOT
      ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt   the devkit's 1-based ILSVRC2012_ID per
      ILSVRC2012_devkit_t12/data/meta.mat        line (line i labels ILSVRC2012_val_<i>), mapped to wnids by the
                                                 devkit's ``synsets`` (ILSVRC2012_ID, WNID; the leaf synsets --
                                                 num_children == 0, IDs 1..1000 -- are the classes)

The flat validation folder is re-sorted on the fly: no file is moved. ``val_labels=PATH`` (a CSV or the ground
truth text file) and ``devkit=PATH`` (the devkit folder or its ``data/``) name the label files explicitly.

Classes: index ``k`` is the ``k``-th wnid in sorted order (torchvision's ``ImageFolder`` convention, that of
torchvision's released weights). The class list is the sorted wnids of ``LOC_synset_mapping.txt`` or of the
devkit's leaf synsets when one is found (so a partial tree keeps the 1000-class indices a pretrained teacher
uses), else of the ``train/`` class folders, else of the validation labels. Files are sorted by name within a
class (plain string order, as ``ImageFolder``); the flat validation folder in file-name order
(``ILSVRC2012_val_00000001`` first). ``class_names``: the first name of each class in
``LOC_synset_mapping.txt`` / the devkit's ``words`` when present, else the wnid.

Completeness: the split must hold 1000 classes and 1,281,167 (train) / 50,000 (val) images; otherwise a one-line
error gives what was found against what is expected and names missing classes. ``allow_partial=True`` accepts
a subset (a tree holding the file ``DENSEKD_SYNTHETIC_TREE``, written by
:meth:`~densekd.data.synthetic_imagenet.SyntheticImageNet.write_tree`, is always partial).

File index: walking 1.28 M files takes a while, so the listing is cached (``index_cache``: a folder, default
``$DENSEKD_CACHE/imagenet_index`` or ``~/.cache/densekd/imagenet_index``; ``False`` turns it off) as one ``.npz``
per tree and split, written atomically. It is reused while the fingerprint holds: the tree's path, the
modification times of the class folders (or of the flat validation folder) and the size and time of the label
files -- adding, removing or renaming an image changes its folder's time. The index lives in NumPy arrays
(file names as fixed-width bytes, labels as int64), so forked loader workers share it without copying.

Samples (``__getitem__``): ``image`` (3 x size x size float32, normalised with ``mean`` / ``std``), ``target``
and ``index``. Geometry (NumPy's global RNG, which the loader seeds per sample): training
(``augment``) = torchvision's ``RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3))`` then a horizontal
flip with p = 0.5; evaluation = ``Resize(resize)`` of the shorter side (default ``round(size * 256 / 224)``,
256 for 224) then ``CenterCrop(size)``; bilinear resizing, anti-aliased. ``load(index)`` returns the decoded
``H x W x 3`` uint8 RGB image and the label, before any transform.

Decoding (``decode``):

* ``'pil'`` (default): the loader workers decode with Pillow (``convert('RGB')``: ImageNet holds greyscale and
  CMYK JPEGs, and one PNG named ``.JPEG``) and resize with Pillow.
* ``'torchvision'``: the workers decode with ``torchvision.io.decode_jpeg`` on the CPU (libjpeg-turbo) and
  resize with ``torch.nn.functional.interpolate(antialias=True)``.
* ``'device'``: the workers only read the file bytes and draw the crop; the batch carries ``jpeg`` (a list of
  1-D uint8 tensors) and ``geometry`` (a list of crop parameters), and :meth:`on_device` -- which the trainer,
  the evaluation and the probes call after moving a batch to its device -- decodes the batch there with
  ``torchvision.io.decode_jpeg(device=...)`` (nvJPEG on CUDA, libjpeg-turbo on the CPU) and crops, resizes,
  flips and normalises it on that device. Files that are not baseline RGB / greyscale JPEGs (the 22 CMYK JPEGs,
  the PNG) are decoded by Pillow in the worker and travel as pixels. The crop is drawn from the same RNG as
  with ``'pil'``, so the three decoders give the same crops and differ only by rounding (at most one grey
  level on the synthetic tree's pictures).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from densekd.data.views import random_resized_box
from densekd.registry import DATASETS

SPLITS = ("train", "val")
NUM_CLASSES = 1000
EXPECTED_IMAGES = {"train": 1_281_167, "val": 50_000}
DECODERS = ("pil", "torchvision", "device")
IMAGE_EXTS = (".jpeg", ".jpg", ".png")
SYNTHETIC_MARKER = "DENSEKD_SYNTHETIC_TREE"
SYNSET_MAPPING = "LOC_synset_mapping.txt"
VAL_SOLUTION = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
INDEX_VERSION = 1
LAYOUT = ("ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG, or the flat ROOT/val/ILSVRC2012_val_*.JPEG with "
          f"{VAL_SOLUTION} (Kaggle) or {DEVKIT}/data/{{{GROUND_TRUTH}, meta.mat}} (the devkit); ROOT may also hold "
          "Kaggle's ILSVRC/Data/CLS-LOC/")
HOW_TO_GET = ("download ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and ILSVRC2012_devkit_t12.tar.gz from "
              "https://image-net.org/ (registration required) or Kaggle's imagenet-object-localization-challenge, "
              "and extract them under ROOT (see README, Getting the datasets), or pass --data-root PATH; nothing is "
              "downloaded automatically; for a run without data use --synthetic")


# ------------------------------------------------------------------------------------------------ label files
def imagenet_folder(root: str | os.PathLike) -> Path:
    """The folder holding ``train/`` / ``val/``: ``root`` itself, or Kaggle's ``root/ILSVRC/Data/CLS-LOC``."""
    root = Path(os.path.expanduser(str(root)))
    if (root / "train").is_dir() or (root / "val").is_dir():
        return root
    kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
    return kaggle if kaggle.is_dir() else root


def _search_dirs(folder: Path, root: Path) -> list[Path]:
    """Where label files may lie: the tree's folder, ROOT and up to three folders above the tree."""
    dirs = [folder, folder / "val", root] + list(folder.parents)[:3]
    seen, out = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _find(name: str, dirs: Sequence[Path]) -> Path | None:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    return None


def _find_devkit(dirs: Sequence[Path], devkit: str | os.PathLike | None) -> Path | None:
    """The devkit's ``data/`` folder (holding meta.mat), from ``devkit=`` or next to the tree."""
    candidates = []
    if devkit is not None:
        d = Path(os.path.expanduser(str(devkit)))
        candidates = [d / "data", d]
        found = [c for c in candidates if (c / "meta.mat").is_file()]
        if not found:
            raise FileNotFoundError(f"ImageNet devkit={str(devkit)!r}: no meta.mat in {d} or {d / 'data'}; give the "
                                    f"extracted {DEVKIT} folder (from ILSVRC2012_devkit_t12.tar.gz)")
        return found[0]
    for d in dirs:
        candidates += [d / DEVKIT / "data", d / "devkit" / "data", d / "data"]
    for c in candidates:
        if (c / "meta.mat").is_file():
            return c
    return None


def read_synset_mapping(path: Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt``: ``'n01440764 tench, Tinca tinca'`` per line -> {wnid: names}."""
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        wnid, _, names = text.partition(" ")
        if not wnid.startswith("n") or not wnid[1:].isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'wnid names', got {text[:60]!r}")
        out[wnid] = names.strip()
    if not out:
        raise ValueError(f"{path} lists no synsets; it should hold 1000 lines 'wnid names'")
    return out


def read_devkit_meta(path: Path) -> list[tuple[int, str, str]]:
    """The devkit's ``meta.mat`` -> [(ILSVRC2012_ID, wnid, words)] of its leaf synsets (``num_children == 0``:
    the 1000 classes, IDs 1..1000 in the real devkit), by ID."""
    import scipy.io

    try:
        synsets = scipy.io.loadmat(str(path), squeeze_me=True)["synsets"]
    except Exception as exc:  # noqa: BLE001 - any reader failure names the file
        raise ValueError(f"{path} is not the ILSVRC2012 devkit's meta.mat ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); extract ILSVRC2012_devkit_t12.tar.gz again") from None
    synsets = np.atleast_1d(synsets)
    names = synsets.dtype.names or ()
    if not {"ILSVRC2012_ID", "WNID"} <= set(names):
        raise ValueError(f"{path}: its synsets have fields {list(names)[:8]}, not ILSVRC2012_ID / WNID; give the "
                         f"devkit's data/meta.mat")
    leaves = []
    for s in synsets:
        children = int(s["num_children"]) if "num_children" in names else 0
        ident = int(s["ILSVRC2012_ID"])
        if children == 0 and ("num_children" in names or ident <= NUM_CLASSES):
            words = str(s["words"]) if "words" in names else ""
            leaves.append((ident, str(s["WNID"]).strip(), words))
    leaves.sort()
    return leaves


def read_val_solution(path: Path) -> dict[str, str]:
    """Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the string starts with the wnid, then
    boxes) -> {image id (file name without extension): wnid}."""
    out = {}
    with open(path, newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise ValueError(f"{path}: expected the header 'ImageId,PredictionString' (Kaggle's {VAL_SOLUTION}), "
                             f"got {header!r}")
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            pred = row[1].split() if len(row) > 1 else []
            if not pred or not pred[0].startswith("n"):
                raise ValueError(f"{path}:{lineno}: the PredictionString of {row[0]!r} does not start with a wnid")
            out[row[0].strip()] = pred[0]
    if not out:
        raise ValueError(f"{path} holds no labels")
    return out


def read_ground_truth(path: Path, leaves: Sequence[tuple[int, str, str]]) -> dict[str, str]:
    """The devkit's ground truth (one 1-based ILSVRC2012_ID per line; line ``i`` labels
    ``ILSVRC2012_val_<i:08d>``) -> {image id: wnid} through ``meta.mat``'s leaf synsets."""
    by_id = {ident: wnid for ident, wnid, _ in leaves}
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        try:
            ident = int(text)
        except ValueError:
            raise ValueError(f"{path}:{lineno}: expected an ILSVRC2012_ID (an integer), got {text[:40]!r}") from None
        if ident not in by_id:
            raise ValueError(f"{path}:{lineno}: ILSVRC2012_ID {ident} is not a leaf synset of meta.mat (the classes "
                             f"are IDs 1..{len(by_id)}); use the ground truth and meta.mat of the same devkit")
        out[f"ILSVRC2012_val_{lineno:08d}"] = by_id[ident]
    if not out:
        raise ValueError(f"{path} holds no labels")
    return out


# ------------------------------------------------------------------------------------------------ file index
def _image_names(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if os.path.splitext(e.name)[1].lower() in IMAGE_EXTS
                  and e.is_file())


def _subdirs(folder: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(folder) if e.is_dir()), key=lambda e: e.name)


def default_cache_dir() -> Path:
    base = os.environ.get("DENSEKD_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "densekd")
    return Path(base) / "imagenet_index"


class _Listing:
    """How one split is laid out, what labels it, and its fingerprint (everything cheap: no image listing)."""

    def __init__(self, root: Path, folder: Path, split: str, val_labels, devkit):
        self.root, self.folder, self.split = root, folder, split
        self.dir = folder / split
        if not self.dir.is_dir():
            where = "" if folder == root else f" (under {root})"
            raise FileNotFoundError(f"ImageNet {split} folder not found: {self.dir} does not exist{where}. Expected "
                                    f"layout: {LAYOUT}; {HOW_TO_GET}")
        dirs = _search_dirs(folder, root)
        self.class_dirs = _subdirs(self.dir)
        self.flat = split == "val" and not self.class_dirs
        self.mapping_file = _find(SYNSET_MAPPING, dirs)
        self.devkit = _find_devkit(dirs, devkit) if (devkit is not None or self.flat or not self.mapping_file) \
            else None
        self.label_file: Path | None = None
        if self.flat:
            if val_labels is not None:
                self.label_file = Path(os.path.expanduser(str(val_labels)))
                if not self.label_file.is_file():
                    raise FileNotFoundError(f"ImageNet val_labels={str(val_labels)!r} does not exist; give "
                                            f"{VAL_SOLUTION} or {GROUND_TRUTH}")
            else:
                self.label_file = _find(VAL_SOLUTION, dirs) or (
                    self.devkit / GROUND_TRUTH if self.devkit and (self.devkit / GROUND_TRUTH).is_file() else None)
            if self.label_file is None:
                raise FileNotFoundError(
                    f"ImageNet's flat validation folder {self.dir} needs its labels: {VAL_SOLUTION} (Kaggle) or "
                    f"{DEVKIT}/data/{GROUND_TRUTH} with meta.mat, next to {folder} or under {root}, or set "
                    f"val_labels=PATH / devkit=PATH; or sort val/ into class folders. {HOW_TO_GET}")
            if self.label_file.suffix.lower() != ".csv" and self.devkit is None:
                raise FileNotFoundError(f"ImageNet ground truth {self.label_file} gives ILSVRC2012_IDs, which need the "
                                        f"devkit's meta.mat to become wnids; set devkit=PATH ({DEVKIT}/)")
        self.synthetic = (root / SYNTHETIC_MARKER).is_file() or (folder / SYNTHETIC_MARKER).is_file()

    def fingerprint(self) -> str:
        parts: list[Any] = [INDEX_VERSION, str(self.dir.resolve()), self.split, self.flat]
        if self.flat:
            parts.append(os.stat(self.dir).st_mtime_ns)
        else:
            parts += [(e.name, e.stat().st_mtime_ns) for e in self.class_dirs]
        for f in (self.label_file, self.mapping_file, self.devkit / "meta.mat" if self.devkit else None):
            if f is not None:
                st = os.stat(f)
                parts.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
        return hashlib.sha1(json.dumps(parts).encode()).hexdigest()

    # -- classes ------------------------------------------------------------------------------
    def reference_classes(self) -> tuple[list[str] | None, dict[str, str]]:
        """(sorted wnids of the synset list, {wnid: names}) when LOC_synset_mapping.txt or meta.mat is found."""
        if self.mapping_file is not None:
            words = read_synset_mapping(self.mapping_file)
            return sorted(words), words
        if self.devkit is not None:
            leaves = read_devkit_meta(self.devkit / "meta.mat")
            return sorted(w for _, w, _ in leaves), {w: words for _, w, words in leaves}
        return None, {}

    def val_labels(self) -> dict[str, str]:
        if self.label_file.suffix.lower() == ".csv":
            return read_val_solution(self.label_file)
        return read_ground_truth(self.label_file, read_devkit_meta(self.devkit / "meta.mat"))

    def build(self) -> dict:
        """Walk the split: {'wnids', 'names' (S array), 'targets' (int64), 'missing_classes', 'source'}."""
        ref, _ = self.reference_classes()
        if self.flat:
            labels = self.val_labels()
            present = _image_names(self.dir)
            wnids = ref or self._train_classes() or sorted(set(labels.values()))
            index = {w: k for k, w in enumerate(wnids)}
            unlabelled = [n for n in present if os.path.splitext(n)[0] not in labels]
            if unlabelled:
                raise ValueError(f"ImageNet validation image {self.dir / unlabelled[0]} has no label in "
                                 f"{self.label_file} ({len(unlabelled)} of {len(present)} unlabelled); use the labels "
                                 f"of the same release")
            unknown = sorted({labels[os.path.splitext(n)[0]] for n in present} - set(index))
            if unknown:
                raise ValueError(f"ImageNet {self.label_file} labels validation images with wnids that are not "
                                 f"classes ({', '.join(unknown[:5])}); the class list has {len(wnids)} wnids")
            targets = [index[labels[os.path.splitext(n)[0]]] for n in present]
            names = present
            missing_images = len(labels) - len(present)
            source = f"flat {self.dir} labelled by {self.label_file}"
            missing_classes = sorted(set(wnids) - {labels[os.path.splitext(n)[0]] for n in present})
        else:
            found = [e.name for e in self.class_dirs]
            wnids = ref or (self._train_classes() if self.split == "val" else None) or found
            index = {w: k for k, w in enumerate(wnids)}
            stray = [w for w in found if w not in index]
            if stray:
                raise ValueError(f"ImageNet {self.dir} has class folders that are not classes: "
                                 f"{', '.join(stray[:5])}{' ...' if len(stray) > 5 else ''} (the class list has "
                                 f"{len(wnids)} wnids{' from ' + str(self.mapping_file or self.devkit) if ref else ''})"
                                 f"; remove them")
            names, targets, missing_classes = [], [], []
            present = set(found)
            for w in wnids:
                files = _image_names(self.dir / w) if w in present else []
                if not files:
                    missing_classes.append(w)
                names += files
                targets += [index[w]] * len(files)
            missing_images = 0
            source = f"class folders of {self.dir}"
        width = max((len(n.encode()) for n in names), default=1)
        return {"wnids": list(wnids), "names": np.array([n.encode() for n in names], dtype=f"S{width}"),
                "targets": np.asarray(targets, dtype=np.int64), "missing_classes": missing_classes,
                "missing_images": int(missing_images), "source": source}

    def _train_classes(self) -> list[str] | None:
        train = self.folder / "train"
        return [e.name for e in _subdirs(train)] if train.is_dir() else None


def _cache_path(cache_dir: Path, listing: _Listing) -> Path:
    key = hashlib.sha1(f"{listing.dir.resolve()}|{listing.split}".encode()).hexdigest()[:16]
    return cache_dir / f"imagenet-{listing.split}-{key}.npz"


def _read_index(path: Path, fingerprint: str) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("fingerprint") != fingerprint:
                return None
            return {"wnids": meta["wnids"], "names": z["names"], "targets": z["targets"].astype(np.int64),
                    "missing_classes": meta["missing_classes"], "missing_images": meta["missing_images"],
                    "source": meta["source"]}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def _write_index(path: Path, fingerprint: str, index: dict) -> None:
    """Write the index atomically (a temporary file in the same folder, then ``os.replace``); a cache folder
    that cannot be written only warns."""
    meta = {"fingerprint": fingerprint, "wnids": index["wnids"], "missing_classes": index["missing_classes"],
            "missing_images": index["missing_images"], "source": index["source"]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, meta=np.array(json.dumps(meta)), names=index["names"], targets=index["targets"])
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        warnings.warn(f"ImageNet file index not cached ({path}: {exc}); set index_cache=DIR to a writable folder")


def load_index(listing: _Listing, cache: Any = None) -> tuple[dict, str]:
    """The split's file index and where it came from (``'cache'`` or ``'walk'``)."""
    cache_dir = None if cache is False or cache == "" else (default_cache_dir() if cache in (None, True)
                                                          else Path(os.path.expanduser(str(cache))))
    fingerprint = listing.fingerprint()
    if cache_dir is not None:
        path = _cache_path(cache_dir, listing)
        if path.is_file():
            index = _read_index(path, fingerprint)
            if index is not None:
                return index, "cache"
    index = listing.build()
    if cache_dir is not None:
        _write_index(_cache_path(cache_dir, listing), fingerprint, index)
    return index, "walk"


# ------------------------------------------------------------------------------------------------ geometry
def geometry(width: int, height: int, size: int, augment: bool, resize: int, scale: Sequence[float] = (0.08, 1.0),
             ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True) -> tuple[int, ...]:
    """Crop parameters ``(top, left, crop_h, crop_w, resize_h, resize_w, out_top, out_left, flip)``: cut the box
    out of the image, resize it to ``resize_h x resize_w``, cut ``size x size`` at ``(out_top, out_left)``, flip.

    Training: torchvision's ``RandomResizedCrop`` box (NumPy's global RNG) resized to ``size``, then the flip with
    p = 0.5. Evaluation: torchvision's ``Resize(resize)`` (shorter side to ``resize``, the longer one
    ``int(resize * long / short)``) and ``CenterCrop(size)`` (offsets ``int(round((r - size) / 2))``)."""
    if augment:
        top, left, ch, cw = random_resized_box(height, width, scale, ratio)
        f = int(bool(flip) and np.random.rand() < 0.5)
        return top, left, ch, cw, size, size, 0, 0, f
    if width <= height:
        rw, rh = resize, int(resize * height / width)
    else:
        rh, rw = resize, int(resize * width / height)
    if min(rh, rw) < size:
        raise ValueError(f"ImageNet evaluation: resize={resize} is smaller than the crop size={size}")
    return 0, 0, height, width, rh, rw, int(round((rh - size) / 2.0)), int(round((rw - size) / 2.0)), 0


def apply_pil(img, g: Sequence[int], size: int):
    """:func:`geometry`'s parameters applied to a PIL image: crop, then resize (bilinear, anti-aliased), as
    torchvision's PIL path (``resize(box=...)`` would read pixels outside the box at its edges)."""
    from PIL import Image

    top, left, ch, cw, rh, rw, ot, ol, f = (int(v) for v in g)
    if (top, left, ch, cw) != (0, 0, img.size[1], img.size[0]):
        img = img.crop((left, top, left + cw, top + ch))
    out = img.resize((rw, rh), Image.BILINEAR)
    if (ot, ol, rh, rw) != (0, 0, size, size):
        out = out.crop((ol, ot, ol + size, ot + size))
    return out.transpose(Image.FLIP_LEFT_RIGHT) if f else out


def apply_tensor(x: torch.Tensor, g: Sequence[int], size: int) -> torch.Tensor:
    """:func:`geometry`'s parameters applied to a ``C x H x W`` uint8 tensor on any device; returns ``3 x size x
    size`` float32 in 0..255 rounded to whole levels (as the uint8 images of the PIL path)."""
    top, left, ch, cw, rh, rw, ot, ol, f = (int(v) for v in g)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    box = x[:3, top:top + ch, left:left + cw].unsqueeze(0).float()
    out = torch.nn.functional.interpolate(box, size=(rh, rw), mode="bilinear", align_corners=False, antialias=True)[0]
    out = out[:, ot:ot + size, ol:ol + size]
    if f:
        out = out.flip(-1)
    return out.round_().clamp_(0, 255)


def _normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``... x 3 x H x W`` float in 0..255 -> ``(x / 255 - mean) / std``."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1) * 255.0
    return (x - m) / s


def _decode_jpeg(data, device) -> Any:
    """torchvision.io.decode_jpeg of one tensor or a list (RGB), without its deprecation warning."""
    from torchvision.io import ImageReadMode, decode_jpeg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def encoded_or_decoded(data: bytes) -> tuple[torch.Tensor, int, int]:
    """(tensor, width, height) from the file's header: the bytes as a 1-D uint8 tensor for a baseline RGB or
    greyscale JPEG, else (CMYK, a PNG named .JPEG) the image decoded by Pillow as a ``3 x H x W`` uint8 tensor --
    the few files nvJPEG may not read travel decoded."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), width, height
        rgb = np.array(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), width, height


def decode_all(items: Sequence[torch.Tensor], device: torch.device | str) -> list[torch.Tensor]:
    """:func:`encoded_or_decoded`'s tensors as ``C x H x W`` uint8 images on ``device``: the JPEG bytes decoded
    together (nvJPEG's batched decoder on CUDA, libjpeg-turbo on the CPU), the decoded ones moved there."""
    device = torch.device(device)
    out: list[torch.Tensor | None] = [None] * len(items)
    encoded = [i for i, t in enumerate(items) if t.dim() == 1]
    if encoded:
        # decode_jpeg reads its input from host memory, whatever the device
        images = _decode_jpeg([items[i].cpu() for i in encoded], device if device.type == "cuda" else "cpu")
        for i, img in zip(encoded, images):
            out[i] = img
    for i, t in enumerate(items):
        if out[i] is None:
            out[i] = t.to(device, non_blocking=True)
    return out


# ------------------------------------------------------------------------------------------------ datasets
class _ImageNetBase(Dataset):
    """Decoding, geometry, samples and the device step shared by :class:`ImageNet` and its synthetic stand-in.
    Subclasses set ``targets`` and implement ``read_bytes(index)``."""

    num_classes = NUM_CLASSES
    palette = None
    load_keys = ("image", "target")

    def _setup(self, split, size, resize, augment, crop_scale, crop_ratio, flip, mean, std, decode) -> None:
        if split not in SPLITS:
            raise ValueError(f"ImageNet split must be one of {SPLITS} (the test split has no public labels); got "
                             f"{split!r}")
        if decode not in DECODERS:
            raise ValueError(f"ImageNet decode must be one of {DECODERS}; got {decode!r}")
        if int(size) < 1:
            raise ValueError(f"ImageNet size must be >= 1; got {size!r}")
        self.split, self.size = split, int(size)
        self.resize = int(round(self.size * 256 / 224)) if resize is None else int(resize)
        if self.resize < self.size:
            raise ValueError(f"ImageNet resize={resize} must be >= size={size} (resize the shorter side, then crop)")
        self.augment = (split == "train") if augment is None else bool(augment)
        self.crop_scale = tuple(float(s) for s in crop_scale)
        self.crop_ratio = tuple(float(r) for r in crop_ratio)
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1; got {crop_scale!r}")
        if len(self.crop_ratio) != 2 or not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must be (low, high) with 0 < low <= high; got {crop_ratio!r}")
        self.flip = bool(flip)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std must be 3 RGB values (std > 0) as fractions of 255; got {mean}, {std}")
        self.decode = decode

    def __len__(self) -> int:
        return len(self.targets)

    def read_bytes(self, index: int) -> bytes:
        raise NotImplementedError

    def _geometry(self, width: int, height: int) -> tuple[int, ...]:
        return geometry(width, height, self.size, self.augment, self.resize, self.crop_scale, self.crop_ratio,
                        self.flip)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Raw sample ``index``: (H x W x 3 uint8 RGB as decoded by Pillow, class index)."""
        from PIL import Image

        with Image.open(io.BytesIO(self.read_bytes(index))) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8), int(self.targets[index])

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        data = self.read_bytes(index)
        if self.decode == "pil":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                rgb = img.convert("RGB")
            out = apply_pil(rgb, self._geometry(*rgb.size), self.size)
            x = torch.from_numpy(np.array(out, dtype=np.uint8)).permute(2, 0, 1).float()
            sample = {"image": _normalize(x, self.mean, self.std)}
        else:
            item, width, height = encoded_or_decoded(data)
            g = self._geometry(width, height)
            if self.decode == "torchvision":
                x = apply_tensor(decode_all([item], "cpu")[0], g, self.size)
                sample = {"image": _normalize(x, self.mean, self.std)}
            else:
                sample = {"jpeg": item, "geometry": tuple(int(v) for v in g)}
        sample["target"] = int(self.targets[index])
        sample["index"] = index
        return sample

    # -- the bytes path: collate in the loader, decode on the batch's device ------------------------------------
    @staticmethod
    def collate(items: list[dict]) -> dict:
        """``default_collate``, except that ``jpeg`` (variable-length byte tensors) and ``geometry`` stay lists."""
        if not items or "jpeg" not in items[0]:
            return default_collate(items)
        raw = [(it.pop("jpeg"), it.pop("geometry")) for it in items]
        batch = default_collate(items)
        batch["jpeg"], batch["geometry"] = [r[0] for r in raw], [r[1] for r in raw]
        return batch

    def on_device(self, batch: dict) -> dict:
        """Decode a ``decode='device'`` batch where its tensors are (``target``'s device): nvJPEG on CUDA,
        libjpeg-turbo on the CPU; then crop, resize, flip and normalise there into ``image``. Other batches pass
        through unchanged."""
        if "jpeg" not in batch:
            return batch
        batch = dict(batch)
        data, geo = batch.pop("jpeg"), batch.pop("geometry")
        target = batch.get("target")
        device = target.device if isinstance(target, torch.Tensor) else torch.device("cpu")
        x = torch.stack([apply_tensor(img, g, self.size) for img, g in zip(decode_all(data, device), geo)])
        batch["image"] = _normalize(x, self.mean, self.std)
        return batch


@DATASETS.register()
class ImageNet(_ImageNetBase):
    """ImageNet (ILSVRC-2012) from its folder tree (module docstring: layouts, class order, completeness, the
    cached index, samples and decoders).

    Args:
        root: the folder holding ``train/`` and ``val/`` (or Kaggle's ``ILSVRC/Data/CLS-LOC/``).
        split: ``'train'`` or ``'val'``.
        size: crop side (224). resize: evaluation resize of the shorter side (default ``round(size * 256/224)``).
        augment: random resized crop + flip; default on for ``train``.
        crop_scale, crop_ratio, flip: ``RandomResizedCrop``'s scale / ratio ranges and the flip.
        mean, std: normalisation (ImageNet's statistics).
        decode: ``'pil'``, ``'torchvision'`` or ``'device'`` (module docstring).
        allow_partial: accept a tree with fewer classes or images than the full release.
        index_cache: folder of the cached file index (default ``~/.cache/densekd/imagenet_index``), ``False``
            to walk the tree at every start.
        val_labels: the flat validation folder's label file (``LOC_val_solution.csv`` or the devkit's ground
            truth), when it is not next to the tree. devkit: the devkit folder (``meta.mat``).

    Attributes: ``wnids`` (the class order), ``class_names``, ``targets`` (int64 array), ``index_source``
    (``'cache'`` or ``'walk'``), ``layout`` (what was read).
    """

    synthetic = "SyntheticImageNet"

    def __init__(self, root: str = "data/imagenet", split: str = "train", size: int = 224, resize: int | None = None,
                 augment: bool | None = None, crop_scale: Sequence[float] = (0.08, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD, decode: str = "pil",
                 allow_partial: bool = False, index_cache: str | bool | None = None, val_labels: str | None = None,
                 devkit: str | None = None):
        if root is None:
            raise FileNotFoundError(f"ImageNet needs root=PATH (use --data-root), laid out as {LAYOUT}; {HOW_TO_GET}")
        self._setup(split, size, resize, augment, crop_scale, crop_ratio, flip, mean, std, decode)
        self.root = str(root)
        top = Path(os.path.expanduser(str(root)))
        if not top.is_dir():
            raise FileNotFoundError(f"ImageNet root not found: {top} does not exist. Expected layout: {LAYOUT}; "
                                    f"{HOW_TO_GET}")
        self.folder = imagenet_folder(top)
        listing = _Listing(top, self.folder, split, val_labels, devkit)
        index, self.index_source = load_index(listing, index_cache)
        self.split_dir, self.flat, self.layout = listing.dir, listing.flat, index["source"]
        self.wnids = list(index["wnids"])
        self.num_classes = len(self.wnids)
        self._names = index["names"]
        self.targets = index["targets"]
        _, words = listing.reference_classes()
        self.words = words
        self.class_names = [words[w].split(",")[0].strip() if words.get(w) else w for w in self.wnids]
        self.partial = bool(allow_partial) or listing.synthetic
        self._check_complete(index)

    def _check_complete(self, index: dict) -> None:
        expected, n, classes = EXPECTED_IMAGES[self.split], len(self.targets), len(self.wnids)
        present = classes - len(index["missing_classes"])
        if n == 0:
            raise FileNotFoundError(f"ImageNet {self.split} folder {self.split_dir} holds no images (.JPEG). Expected "
                                    f"layout: {LAYOUT}; {HOW_TO_GET}")
        if self.partial or (classes == NUM_CLASSES and present == NUM_CLASSES and n == expected):
            return
        missing = index["missing_classes"]
        what = f"; classes without images: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}" \
            if missing else ""
        if index["missing_images"]:
            what += f"; {index['missing_images']:,} labelled images are not in {self.split_dir}"
        raise ValueError(f"ImageNet {self.split} at {self.split_dir} is incomplete: found {present} of "
                         f"{NUM_CLASSES} classes and {n:,} of {expected:,} images (class list of {classes}){what}. "
                         f"Extract the whole archive, or pass allow_partial=True (data.{self.split}.allow_partial="
                         f"True) to use what is there")

    def path(self, index: int) -> Path:
        name = self._names[index].decode()
        return self.split_dir / name if self.flat else self.split_dir / self.wnids[int(self.targets[index])] / name

    @property
    def files(self) -> list[str]:
        """Every file in sample order (built on demand: 1.28 M strings for the full training set)."""
        return [str(self.path(i)) for i in range(len(self))]

    def read_bytes(self, index: int) -> bytes:
        return self.path(index).read_bytes()

    def sample_files(self, index: int) -> list[str]:
        return [str(self.path(index))]

    def check_sample(self, index: int) -> None:
        self.load(index)

    def __repr__(self) -> str:
        return (f"ImageNet(root={self.root!r}, split={self.split!r}, n={len(self)}, classes={self.num_classes}, "
                f"size={self.size}, augment={self.augment}, decode={self.decode!r})")
