"""The offline teacher cache: teacher outputs of every (sample, view) of a training set in one HDF5 file.

File layout (written by :func:`write_cache`, through ``tools/cache_teacher.py CONFIG``)::

    teacher_<i>/<tap path>   N x V x *shape   float16 or float32: teacher ``i``'s tensor at that tap (``output`` for
                                              the model output, as the distiller collects it) on view ``v`` of
                                              sample ``n`` of the dataset, ``n`` being the index the view dataset is
                                              asked for; chunked along the views, a few hundred kB a chunk, lzf- or
                                              gzip-compressed
    attrs   format=1, densekd_version, dtype, num_samples (N), num_views (V), dataset (class name), dataset_config
            (JSON), teachers (JSON: per teacher its model, checkpoint, checkpoint_sha256 or 'random-init',
            weights_sha256, input key, taps and their shapes)

The views are those of the finite-view protocol (:mod:`densekd.data.finite_views`): CIFAR's 162 crop offsets x
flips, or 1 without augmentation. The file grows under a hidden name beside the final one (:func:`partial_path`)
and is renamed once complete, so an interrupted write leaves any previous cache in place; run again with the same
plan, it continues after the last finished block of samples (:func:`write_cache`).

:class:`TeacherCacheDataset` wraps the view dataset and adds to each item its cached tensors, read at the item's
``(index, view)``, as ``batch['teacher_cache/<i>/<tap path>']`` (float32; :func:`batch_key`). The file is opened
lazily in each loader worker. What the cache must match (dataset size and views here; teachers and taps in
:mod:`densekd.distill.cache`) is checked when training starts.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import Dataset

from densekd.data.finite_views import view_dataset
from densekd.data.sampling import collate_samples
from densekd.data.synthesized import _h5py, publish

FORMAT = 1
KEY_PREFIX = "teacher_cache/"
DTYPES = ("float16", "float32")
COMPRESSIONS = ("lzf", "gzip", "none")
CHUNK_BYTES = 256 * 1024  # target size of one chunk: a read decompresses at most this much per tap
FIX = "python tools/cache_teacher.py CONFIG"


class CacheMismatch(ValueError):
    """The cache file does not match the run's config (another teacher, other taps, another dataset)."""


def batch_key(teacher: int, path: str) -> str:
    """The batch entry holding teacher ``teacher``'s cached tensor at tap ``path``."""
    return f"{KEY_PREFIX}{teacher}/{path}"


def is_cache_key(key: str) -> bool:
    return isinstance(key, str) and key.startswith(KEY_PREFIX)


def h5_name(teacher: int, path: str) -> str:
    return f"teacher_{teacher}/{path}"


def config_path(value: Any) -> str:
    """The file of the config key ``teacher_cache``: a path, or ``dict(path=...)``."""
    if isinstance(value, dict) and set(value) == {"path"}:
        value = value["path"]
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ValueError(f"teacher_cache must be the cache file's path or dict(path=...); got {value!r}")
    return str(value)


def cache_bytes(num_samples: int, num_views: int, shapes: Iterable[tuple], dtype: str) -> int:
    """The size of the cached values (before compression): ``N x V x (elements of every tap) x bytes``."""
    return num_samples * num_views * sum(math.prod(s) for s in shapes) * np.dtype(dtype).itemsize


def read_attrs(path: str | os.PathLike) -> dict:
    """The cache's attributes with ``teachers`` and ``dataset_config`` decoded; a one-line error for a missing
    file or one that is not a teacher cache."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher_cache={str(path)!r}: no such file; write it with {FIX}")
    try:
        with _h5py().File(path, "r") as f:
            attrs = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v) for k, v in f.attrs.items()}
            names = []
            f.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
    except OSError as exc:
        raise CacheMismatch(f"teacher_cache={str(path)!r} is not an HDF5 file ({exc}); write it again with "
                            f"{FIX}") from None
    if attrs.get("format") != FORMAT or "teachers" not in attrs:
        raise CacheMismatch(f"teacher_cache={str(path)!r} is not a densekd teacher cache of format {FORMAT} (format "
                            f"{attrs.get('format')!r}); write it again with {FIX}")
    attrs["teachers"] = json.loads(attrs["teachers"])
    attrs["dataset_config"] = json.loads(attrs.get("dataset_config", "null"))
    attrs["datasets"] = names
    return attrs


def partial_path(path: str | os.PathLike) -> Path:
    """Where :func:`write_cache` keeps an unfinished cache of ``path`` (beside it, hidden)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _open_partial(partial: Path, plan: str, resume: bool, log: Callable[[str], Any]):
    """The unfinished cache to continue (``(file, samples done)``) or ``(None, 0)``: it must be readable and
    planned exactly as this write (same dataset, views, teachers, taps, dtype, compression)."""
    if not (resume and partial.exists()):
        return None, 0
    h5py = _h5py()
    try:
        f = h5py.File(partial, "r+")
    except OSError as exc:
        log(f"teacher cache: the unfinished {partial} cannot be read ({exc}); starting over")
        return None, 0
    if f.attrs.get("plan") != plan:
        f.close()
        log(f"teacher cache: the unfinished {partial} was written for another dataset, teacher, tap or format; "
            f"starting over")
        return None, 0
    done = int(f.attrs["samples_done"])
    log(f"teacher cache: resuming {partial} after {done} of {int(f.attrs['plan_samples'])} samples")
    return f, done


def write_cache(path: str | os.PathLike, dataset, forward: Callable[[dict], dict], taps: dict[int, dict[str, tuple]],
                attrs: dict, dtype: str = "float16", compression: str = "lzf", batch_size: int = 256,
                progress: Callable[[int], Any] | None = None, resume: bool = True,
                log: Callable[[str], Any] = lambda _: None) -> Path:
    """Write the cache of ``dataset`` (a view dataset: :mod:`densekd.data.finite_views`) to ``path``.

    ``forward(batch) -> {teacher: {tap path: B x *shape tensor}}`` runs the teachers on a collated batch of
    rendered views; ``taps`` lists, per teacher, the tap paths and their per-sample shapes. The (sample, view)
    pairs are rendered in order (sample-major), ``batch_size`` at a time; ``progress(n)`` is told of every ``n``
    pairs done (those of a resumed write first). ``attrs`` (JSON-able values) join the format's own attributes.

    Nothing is lost: the file grows under :func:`partial_path` (``path`` keeps any previous cache until the new
    one is complete, then it is fsynced and renamed over it), and the count of finished samples is stored after
    every block of ``batch_size`` views, so a write that is interrupted continues there when run again with the
    same plan (dataset size and views, ``attrs`` -- teachers, their weights' hashes, taps -- dtype and
    compression; ``resume=False`` or any other plan starts over, saying why through ``log``)."""
    if dtype not in DTYPES:
        raise ValueError(f"cache dtype must be one of {DTYPES}; got {dtype!r}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"cache compression must be one of {COMPRESSIONS}; got {compression!r}")
    path = Path(path)
    n, v = len(dataset), int(dataset.num_views)
    block = max(1, batch_size // v)  # samples whose views are rendered, run and written together
    plan = json.dumps(dict(samples=n, views=v, dtype=dtype, compression=compression, attrs=attrs,
                           taps={str(t): {p: list(s) for p, s in ps.items()} for t, ps in taps.items()}),
                      sort_keys=True, default=str)
    partial = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f, start = _open_partial(partial, plan, resume, log)
    if f is None:
        f = _h5py().File(partial, "w")
        for t, paths in taps.items():
            for p, shape in paths.items():
                view_bytes = math.prod(shape) * np.dtype(dtype).itemsize
                chunk = (1, max(1, min(v, CHUNK_BYTES // max(view_bytes, 1)))) + tuple(shape)
                f.create_dataset(h5_name(t, p), shape=(n, v) + tuple(shape), dtype=dtype, chunks=chunk,
                                 compression=None if compression == "none" else compression)
        f.attrs["plan"], f.attrs["plan_samples"], f.attrs["samples_done"] = plan, n, 0
    with f:
        out = {(t, p): f[h5_name(t, p)] for t, paths in taps.items() for p in paths}
        if progress is not None and start:
            progress(start * v)
        for first in range(start, n, block):
            stop = min(n, first + block)
            pairs = [(i, j) for i in range(first, stop) for j in range(v)]
            parts: dict[tuple, list[np.ndarray]] = {k: [] for k in out}
            for b in range(0, len(pairs), batch_size):
                items = [dataset.view_item(i, j) for i, j in pairs[b:b + batch_size]]
                result = forward(collate_samples(dataset, items))
                for (t, p) in out:
                    parts[(t, p)].append(result[t][p].detach().float().cpu().numpy())
                if progress is not None:
                    progress(len(items))
            for key, ds in out.items():
                ds[first:stop] = np.concatenate(parts[key]).reshape((stop - first, v) + ds.shape[2:]).astype(dtype)
            f.attrs["samples_done"] = stop
            f.flush()
        for key in ("plan", "plan_samples", "samples_done"):
            del f.attrs[key]
        f.attrs["format"] = FORMAT
        for k, value in attrs.items():
            f.attrs[k] = json.dumps(value) if isinstance(value, (dict, list, tuple)) or value is None else value
        f.attrs["dtype"], f.attrs["num_samples"], f.attrs["num_views"] = dtype, n, v
    publish(partial, path)
    return path


class TeacherCacheDataset(Dataset):
    """Item ``i``: the view dataset's item ``i`` plus its cached teacher tensors, ``batch_key(t, path)`` ->
    float32 tensor of the tap's shape, read at ``(i, item['view'])``. Other attributes are the inner dataset's.

    The file must hold as many samples and views as the dataset (a one-line :class:`CacheMismatch` otherwise);
    the teachers and taps are checked by the distillation strategy (:mod:`densekd.distill.cache`)."""

    def __init__(self, dataset, path: str | os.PathLike):
        self.dataset = dataset
        self.path = str(path)
        self.attrs = read_attrs(path)
        n, v = len(dataset), int(dataset.num_views)
        made = f"{self.attrs.get('dataset')} of {self.attrs['num_samples']} samples x {self.attrs['num_views']} views"
        if (self.attrs["num_samples"], self.attrs["num_views"]) != (n, v):
            raise CacheMismatch(f"teacher_cache={self.path!r} holds {made}, but the training set is "
                                f"{type(dataset).__name__} of {n} samples x {v} views; write the cache for this "
                                f"config: {FIX}")
        self.names = [name for name in self.attrs["datasets"] if name.startswith("teacher_")]
        self._handle, self._pid = None, None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"], state["_pid"] = None, None
        return state

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("dataset")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def _datasets(self) -> dict:
        """``{batch key: HDF5 dataset}``, opened once per process (each loader worker has its own handle)."""
        if self._handle is None or self._pid != os.getpid():
            f = _h5py().File(self.path, "r")
            keys = [batch_key(int(n[len("teacher_"):].split("/", 1)[0]), n.split("/", 1)[1]) for n in self.names]
            self._handle, self._pid = (f, {k: f[n] for k, n in zip(keys, self.names)}), os.getpid()
        return self._handle[1]

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        view = int(item["view"])
        for key, ds in self._datasets().items():
            item[key] = torch.from_numpy(ds[int(index), view].astype(np.float32))
        return item


def wrap_view_dataset(dataset, path: str | os.PathLike):
    """``dataset`` with its view dataset (the first of its chain that implements :mod:`densekd.data.finite_views`)
    replaced by a :class:`TeacherCacheDataset` over it, so that the wrappers above it (CRD's sample indices,
    CS-KD's pairs, a held-out split) pass the cached tensors on; :class:`~densekd.data.finite_views.NoFiniteViews`
    when no dataset of the chain has finite views."""
    base = view_dataset(dataset)
    cached = TeacherCacheDataset(base, path)
    if base is dataset:
        return cached
    node = dataset
    while node.__dict__.get("dataset") is not base:
        node = node.__dict__["dataset"]
    node.dataset = cached
    return dataset
