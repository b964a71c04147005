"""Frozen features of one tap, extracted once and cached on disk.

A cache entry is a folder ``CACHE_DIR/<split>-<key>/`` holding ``features.npy`` (``N x C`` pooled, or
``N x C x h x w`` per pixel), ``labels.npy`` (``N`` class ids, or ``N x H x W`` label maps) and ``meta.json``.
``key`` hashes everything the features depend on: the checkpoint file's content (SHA-256), the model config,
the tap, the input and target keys, the mode, the dense pooling, the stored dtype and the dataset (its config
after ``--synthetic`` / ``--data-root``, and its length). Each file is written under a temporary name and
renamed into place, ``meta.json`` last: an entry without ``meta.json`` (an interrupted extraction) is never
read, and the next run extracts again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from densekd.distill.taps import FeatureTaps, TapError, expand_taps, is_output_tap, module_paths, resolve_module
from densekd.engine.checkpoint import atomic_write_text
from densekd.registry import close_matches

log = logging.getLogger("densekd.probe")
FORMAT = 1  # bump when the cache layout or the extraction changes


class NoLabelsError(ValueError):
    """The probe's dataset yields no class labels under the target key."""


# -- the tap ---------------------------------------------------------------------------------------------------
def tap_names(model: nn.Module) -> list[str]:
    """What ``--layer`` accepts for ``model``: module paths, ``output``, and every entry of its tap groups."""
    names = module_paths(model) + ["output"]
    for group, paths in (getattr(model, "feature_taps", None) or {}).items():
        names += [f"{group}[{i}]" for i in range(len(paths))] + [f"{group}[-1]"]
    return names


def resolve_tap(model: nn.Module, layer: str) -> str:
    """The one tap path that ``layer`` names (a group entry such as ``feats[-1]`` is expanded), or a
    :class:`TapError` with the closest valid names."""
    hint = "python tools/list_taps.py CONFIG lists every tap with its shape"
    try:
        paths = expand_taps(model, layer)
    except TapError as exc:
        hits = close_matches(layer, tap_names(model), n=5)
        near = f" Closest: {', '.join(hits)}." if hits else ""
        raise TapError(f"{exc}.{near} ({hint})") from None
    if len(paths) != 1:
        raise TapError(f"probe layer {layer!r} names {len(paths)} taps ({', '.join(paths)}); a probe reads one: give "
                       f"a single entry such as {layer.split('[')[0]}[-1]")
    path = paths[0]
    if is_output_tap(path):
        return path
    try:
        resolve_module(model, path[: -len(":input")] if path.endswith(":input") else path)
    except TapError:
        hits = close_matches(layer, tap_names(model), n=5)
        near = f" Closest: {', '.join(hits)}." if hits else ""
        raise TapError(f"unknown tap {layer!r} for {type(model).__name__}.{near} ({hint})") from None
    return path


# -- checkpoints ----------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


# -- extraction ------------------------------------------------------------------------------------------------
def _pool(feat: torch.Tensor, mode: str, dense_pool: int, tap: str) -> torch.Tensor:
    if not isinstance(feat, torch.Tensor):
        raise TapError(f"tap {tap!r} records a {type(feat).__name__}, not a tensor; probe a module whose output is a "
                       f"tensor (python tools/list_taps.py CONFIG shows the outputs)")
    feat = feat.detach().float()
    if mode == "global":
        return feat.flatten(2).mean(2) if feat.dim() > 2 else feat.reshape(feat.shape[0], -1)
    if feat.dim() != 4:
        raise TapError(f"a dense probe needs B x C x h x w features; tap {tap!r} gives {tuple(feat.shape)}. Probe a "
                       f"convolutional stage, or use mode='global'")
    return F.avg_pool2d(feat, dense_pool) if dense_pool > 1 else feat


class _NpyWriter:
    """An ``.npy`` file filled batch by batch through a memory map, renamed into place when complete."""

    def __init__(self, path: Path, dtype, shape: tuple[int, ...]):
        self.path = path
        fd, self.tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self.array = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)

    def finish(self) -> None:
        self.array.flush()
        del self.array
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.array = None
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


@torch.no_grad()
def extract(model: nn.Module, loader, n: int, tap: str, input_key: str, target_key: str, mode: str, out_dir: Path,
            dense_pool: int = 1, dtype: str = "float32", label_dtype=np.int64, device: torch.device | str = "cpu",
            progress: Callable = lambda it, **kw: it, desc: str = "extract") -> dict:
    """Run ``model`` (frozen, eval mode) over ``loader`` and write the tap's features and the labels of its ``n``
    samples into ``out_dir/{features,labels}.npy``. Returns the shapes."""
    from densekd.data.sampling import device_step
    from densekd.engine.evaluate import to_device
    from densekd.tasks.base import batch_input

    out_dir.mkdir(parents=True, exist_ok=True)
    feats = labels = None
    pos = 0
    with FeatureTaps(model, [tap]) as taps:
        try:
            step = device_step(loader.dataset)
            for batch in progress(loader, desc=desc, unit="batch"):
                batch = to_device(batch, torch.device(device), step=step)
                taps.clear()
                output = model(batch_input(batch, input_key, "the probed model"))
                feat = _pool(taps.collect([tap], output)[0], mode, dense_pool, tap).cpu().numpy()
                target = batch[target_key].cpu().numpy() if isinstance(batch[target_key], torch.Tensor) \
                    else np.asarray(batch[target_key])
                if feats is None:
                    feats = _NpyWriter(out_dir / "features.npy", np.dtype(dtype), (n, *feat.shape[1:]))
                    labels = _NpyWriter(out_dir / "labels.npy", label_dtype, (n, *target.shape[1:]))
                b = min(len(feat), n - pos)  # a loader pads nothing in evaluation order; guard anyway
                if feat.shape[1:] != feats.array.shape[1:] or target.shape[1:] != labels.array.shape[1:]:
                    raise ValueError(f"the probe's samples differ in size (features {feat.shape[1:]} vs "
                                     f"{feats.array.shape[1:]}, labels {target.shape[1:]} vs "
                                     f"{labels.array.shape[1:]} at sample {pos}); cached features need one size: "
                                     f"read whole frames of one size (augment=False) or crops of a fixed size")
                feats.array[pos:pos + b] = feat[:b]
                labels.array[pos:pos + b] = target[:b]
                pos += b
            if feats is None or pos != n:
                raise ValueError(f"the probe's loader yielded {pos} of {n} samples")
            shapes = {"features": list(feats.array.shape), "labels": list(labels.array.shape)}
            feats.finish()
            labels.finish()
        except BaseException:
            for w in (feats, labels):
                if w is not None:
                    w.discard()
            raise
    return shapes


# -- the cache ---------------------------------------------------------------------------------------------------
def cache_key(parts: dict[str, Any]) -> str:
    text = json.dumps(dict(parts, format=FORMAT), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class FeatureCache:
    """Cached features under ``root`` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def entry(self, split: str, parts: dict[str, Any]) -> Path:
        return self.root / f"{split}-{cache_key(parts)}"

    def load(self, entry: Path) -> dict | None:
        """``meta`` with memory-mapped ``features`` and ``labels`` of a complete entry, else None."""
        try:
            meta = json.loads((entry / "meta.json").read_text())
            feats = np.load(entry / "features.npy", mmap_mode="r")
            labels = np.load(entry / "labels.npy", mmap_mode="r")
        except (OSError, ValueError):
            return None
        if list(feats.shape) != meta.get("features") or list(labels.shape) != meta.get("labels"):
            return None
        return dict(meta, features_array=feats, labels_array=labels)

    def get_or_extract(self, split: str, parts: dict[str, Any], extract_fn: Callable[[Path], dict]) -> dict:
        """The entry for ``parts`` if it is complete, else ``extract_fn(folder)`` (which writes the two arrays and
        returns their shapes) followed by ``meta.json``. The result says whether it was ``reused`` and how long
        the extraction took (``extract_s``)."""
        entry = self.entry(split, parts)
        cached = self.load(entry)
        if cached is not None:
            log.info(f"{split}: reusing cached features {entry}")
            return dict(cached, reused=True, extract_s=0.0, path=str(entry))
        t0 = time.perf_counter()
        shapes = extract_fn(entry)
        meta = dict(shapes, parts=parts, key=entry.name, written=time.strftime("%Y-%m-%d %H:%M:%S"))
        atomic_write_text(json.dumps(meta, indent=2, default=str) + "\n", entry / "meta.json")
        loaded = self.load(entry)
        if loaded is None:
            raise OSError(f"the features just written to {entry} cannot be read back")
        took = time.perf_counter() - t0
        log.info(f"{split}: extracted features {shapes['features']} in {took:.1f} s -> {entry}")
        return dict(loaded, reused=False, extract_s=took, path=str(entry))
