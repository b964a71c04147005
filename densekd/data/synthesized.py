"""Synthesised images (data-free distillation) as an HDF5 file, and the dataset that reads it.

File layout (one HDF5 file, written by :mod:`densekd.synthesis` or by :func:`write_images`)::

    images        N x H x W x 3 uint8    RGB, the synthesised images after denormalisation (x * std + mean),
                                         clipped to [0, 1] and rounded to 0..255
    targets       N int64 (optional)     the class each image was synthesised for (absent when the method had
                                         no target class: BN statistics only, Gaussian noise, a dense teacher)
    teacher_pred  N int64 (optional)     the teacher's arg-max class on the stored (quantised) image
    attrs         format=1, mean, std (the normalisation the images were optimised in), num_classes, method,
                  fingerprint, and free-form provenance (teacher model, checkpoint, settings as JSON)

Batches are written one file each (:func:`write_images` on ``batches/batch_000012.h5``, under a temporary name,
then renamed, so a batch file is complete or absent) and joined at the end (:func:`join_batch_files`, also under
a temporary name). :class:`SynthesizedImages` reads the joined file.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.data.cifar import to_normalized_tensor
from densekd.data.finite_views import crop_flip, crop_flip_views, draw_crop_flip
from densekd.registry import DATASETS

FORMAT = 1
LABEL_KEYS = ("targets", "teacher_pred")


def _h5py():
    import h5py

    return h5py


def _attr_value(value: Any) -> Any:
    if isinstance(value, (dict, list, tuple)) and not (isinstance(value, (list, tuple)) and value
                                                        and all(isinstance(v, (int, float)) for v in value)):
        return json.dumps(value)
    return "" if value is None else value


def write_images(path: str | os.PathLike, images: np.ndarray, targets: np.ndarray | None = None,
                 teacher_pred: np.ndarray | None = None, attrs: dict | None = None) -> Path:
    """Write one images file atomically (a temporary file in the same folder, fsynced, then renamed).

    ``images``: N x H x W x 3 uint8; ``targets`` / ``teacher_pred``: N integers or None."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be N x H x W x 3 uint8; got {images.shape} {images.dtype}")
    path = Path(path)
    with _atomic_h5(path) as f:
        f.create_dataset("images", data=images, chunks=(min(len(images), 64) or 1,) + images.shape[1:])
        for key, value in (("targets", targets), ("teacher_pred", teacher_pred)):
            if value is not None:
                value = np.asarray(value, dtype=np.int64)
                if value.shape != (len(images),):
                    raise ValueError(f"{key} must have one entry per image ({len(images)}); got {value.shape}")
                f.create_dataset(key, data=value)
        _write_attrs(f, attrs)
    return path


def _write_attrs(f, attrs: dict | None) -> None:
    f.attrs["format"] = FORMAT
    for k, v in (attrs or {}).items():
        f.attrs[k] = _attr_value(v)


@contextmanager
def _atomic_h5(path: Path):
    """An HDF5 file opened for writing under a temporary name beside ``path``; on success it is fsynced, given
    the usual permissions (mkstemp's are 0600) and renamed to ``path``; on any error it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with _h5py().File(tmp, "w") as f:
            yield f
        publish(Path(tmp), path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def publish(tmp: Path, path: Path) -> None:
    """Move a finished file written under ``tmp`` to ``path``: fsynced, given the usual permissions (mkstemp's
    are 0600), renamed (atomic on one filesystem)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def read_attrs(path: str | os.PathLike) -> dict:
    with _h5py().File(path, "r") as f:
        return {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v) for k, v in f.attrs.items()}


def join_batch_files(files: Sequence[str | os.PathLike], path: str | os.PathLike, attrs: dict | None = None) -> Path:
    """Concatenate batch files (same image size; each with the same label datasets) into one file at ``path``,
    written under a temporary name and renamed."""
    h5py = _h5py()
    if not files:
        raise ValueError("no batch files to join")
    with h5py.File(files[0], "r") as f0:
        shape = f0["images"].shape[1:]
        keys = [k for k in LABEL_KEYS if k in f0]
    counts = []
    for p in files:
        with h5py.File(p, "r") as f:
            if f["images"].shape[1:] != shape or [k for k in LABEL_KEYS if k in f] != keys:
                raise ValueError(f"batch file {p} does not match {files[0]} (image size or label datasets differ)")
            counts.append(len(f["images"]))
    total = sum(counts)
    path = Path(path)
    with _atomic_h5(path) as out:
        images = out.create_dataset("images", shape=(total,) + shape, dtype=np.uint8, chunks=(min(total, 64),) + shape)
        labels = {k: out.create_dataset(k, shape=(total,), dtype=np.int64) for k in keys}
        start = 0
        for p, n in zip(files, counts):
            with h5py.File(p, "r") as f:
                images[start:start + n] = f["images"][:]
                for k in keys:
                    labels[k][start:start + n] = f[k][:]
            start += n
        _write_attrs(out, attrs)
    return path


@DATASETS.register()
class SynthesizedImages(Dataset):
    """Images synthesised from a teacher (DeepInversion, BNS, Inception, Gaussian; :mod:`densekd.synthesis`), read
    from the HDF5 file that ``tools/synthesize.py`` writes (layout in the module docstring).

    Samples: ``{'image': 3 x H x W float (normalised with mean / std), 'index': int, 'view': int}`` plus ``'target': int``
    when the file has labels under ``target`` (CIFAR's keys). Without labels (a BN-statistics or Gaussian set, or
    images for a dense teacher) there is no ``'target'``: distil with ``task_weight=0`` (the task loss is then not
    computed) or ``task=dict(type='representation')``.

    Args:
        path: the file (in a pipeline: ``'{STAGE.data}'`` of a ``kind='synthesize'`` stage).
        augment: CIFAR's augmentation: a random crop of the zero-padded image (``padding`` pixels) and a random
            horizontal flip (``flip``); default on (a training set). Its crop offsets x flips are the finite views
            of :mod:`densekd.data.finite_views` (``'view'``, ``num_views``, ``view_item``), so a teacher cache can
            serve the set (``tools/cache_teacher.py``).
        mean, std: normalisation (fractions of 255); default: the file's, the normalisation the images were
            optimised in (the teacher's).
        target: which labels become ``'target'``: ``'targets'`` (the class each image was synthesised for; the
            default, when present), ``'teacher_pred'`` (the teacher's class), or None for none.
        num_samples: use only the first N images.
        in_memory: read the whole file into memory at construction (else one read per sample; the file handle is
            opened in each process on first use).
    """

    palette = None

    def __init__(self, path: str = "", augment: bool = True, padding: int = 4, flip: bool = True,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 target: str | None = "targets", num_samples: int | None = None, in_memory: bool = False):
        self.path = str(path)
        if not self.path or not Path(self.path).is_file():
            raise FileNotFoundError(f"synthesised images not found: {self.path!r}. Write them first with "
                                    f"python tools/synthesize.py CONFIG (its WORK_DIR/images.h5), or in a pipeline "
                                    f"read a synthesize stage's file with path='{{STAGE.data}}'")
        h5py = _h5py()
        if not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path} is not an HDF5 file; give the images.h5 that tools/synthesize.py writes")
        with h5py.File(self.path, "r") as f:
            if "images" not in f:
                raise ValueError(f"{self.path} has no 'images' dataset (it has {sorted(f)}); give the images.h5 that "
                                 f"tools/synthesize.py writes")
            shape = f["images"].shape
            if len(shape) != 4 or shape[-1] != 3:
                raise ValueError(f"{self.path}: 'images' must be N x H x W x 3 uint8; got {shape}")
            attrs = {k: f.attrs[k] for k in f.attrs}
            if target is not None and target not in LABEL_KEYS:
                raise ValueError(f"SynthesizedImages target must be one of {LABEL_KEYS} or None; got {target!r}")
            self.label_key = target if target is not None and target in f else None
            labels = f[self.label_key][:] if self.label_key else None
            self._images = f["images"][:] if in_memory else None
        n = shape[0] if num_samples is None else min(int(num_samples), shape[0])
        if n < 1:
            raise ValueError(f"{self.path} holds no images")
        self.n = n
        self.image_size = tuple(shape[1:3])
        self.attrs = attrs
        self.mean = tuple(float(v) for v in (mean if mean is not None else attrs.get("mean", (0.5, 0.5, 0.5))))
        self.std = tuple(float(v) for v in (std if std is not None else attrs.get("std", (0.5, 0.5, 0.5))))
        self.augment, self.padding, self.flip = bool(augment), int(padding), bool(flip)
        self.targets = None if labels is None else [int(t) for t in labels[:n]]
        nc = int(attrs.get("num_classes", 0) or 0)
        self.num_classes = nc or (max(self.targets) + 1 if self.targets else None)
        self._handle = None
        self._handle_pid = None

    def __len__(self) -> int:
        return self.n

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"] = None, None
        return state

    def _file(self):
        if self._handle is None or self._handle_pid != os.getpid():
            self._handle = _h5py().File(self.path, "r")
            self._handle_pid = os.getpid()
        return self._handle

    def load(self, index: int) -> np.ndarray:
        """The stored H x W x 3 uint8 image ``index``."""
        if not 0 <= index < self.n:
            raise IndexError(f"SynthesizedImages index {index} out of range for {self.n} images")
        if self._images is not None:
            return self._images[index]
        return self._file()["images"][index]

    @property
    def num_views(self) -> int:
        """Distinct items per sample (:mod:`densekd.data.finite_views`): the crop offsets x flips the augmentation
        can draw, 1 without it; a teacher cache can then serve the set."""
        return crop_flip_views(self.padding, self.flip) if self.augment else 1

    def __getitem__(self, index: int) -> dict:
        return self.view_item(index, draw_crop_flip(self.padding, self.flip) if self.augment else 0)

    def view_item(self, index: int, view: int) -> dict:
        """Image ``index`` in view ``view``, drawing from no RNG."""
        index = int(index)
        if not 0 <= int(view) < self.num_views:
            raise ValueError(f"SynthesizedImages: view {view} is outside 0..{self.num_views - 1}")
        image = self.load(index)
        if self.augment:
            image = crop_flip(image, view, self.padding, self.flip)
        sample = {"image": to_normalized_tensor(image, self.mean, self.std), "index": index, "view": int(view)}
        if self.targets is not None:
            sample["target"] = self.targets[index]
        return sample

    def sample_files(self, index: int) -> list[str]:
        return [self.path]


def quantize(images: torch.Tensor, mean: Iterable[float], std: Iterable[float]) -> np.ndarray:
    """Normalised ``B x 3 x H x W`` images -> ``B x H x W x 3`` uint8: ``round(clip(x * std + mean, 0, 1) * 255)``."""
    m = torch.tensor(list(mean), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    x = (images.detach().float() * s + m).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def dequantize(images: np.ndarray, mean: Iterable[float], std: Iterable[float]) -> torch.Tensor:
    """``B x H x W x 3`` uint8 -> normalised ``B x 3 x H x W`` float, as :class:`SynthesizedImages` without augmentation."""
    return torch.stack([to_normalized_tensor(im, tuple(mean), tuple(std)) for im in images])
