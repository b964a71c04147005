"""Benchmark-format predictions of a checkpoint (``tools/test.py --format-only``): every sample of ``data.val``
predicted with the task's inference and written as the dataset's official result files; no metrics (a test split
has no labels).

The pieces: the task turns one prediction into result maps (:meth:`~densekd.tasks.base.Task.result_maps`:
``('label', class ids)`` for segmentation, ``('depth', metres)`` for depth), the dataset names and encodes each
map (``sample_id(i)``, ``result_path(i, kind)``, ``encode_result(kind, map)``: Cityscapes' label-id PNGs, NYU's
16-bit millimetre depth PNGs, see :class:`~densekd.data.cityscapes.CityscapesResults` and
:class:`~densekd.data.nyu.NYUResults`), and this module runs the model and writes the PNGs. With ``overlay`` the
task also blends its prediction over the image (``overlay/<sample_id>.png``; segmentation only).
``predictions.json`` in the output folder lists what was written.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from densekd.config import Config

RESULT_METHODS = ("sample_id", "result_path", "encode_result")


def write_png(path: Path, array: np.ndarray) -> None:
    """A single-channel uint8 / uint16 PNG (folders created); an OSError naming the file if it cannot be written."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype not in (np.uint8, np.uint16) or array.ndim != 2:
        raise ValueError(f"{path}: a result map must be an H x W uint8 / uint16 array; got {array.dtype} {array.shape}")
    if not cv2.imwrite(str(path), np.ascontiguousarray(array)):
        raise OSError(f"could not write {path}")


def check_dataset(dataset) -> None:
    missing = [m for m in RESULT_METHODS if not callable(getattr(dataset, m, None))]
    if missing:
        raise ValueError(f"data.val ({type(dataset).__name__}) has no benchmark result format (it lacks "
                         f"{', '.join(missing)}); Cityscapes and the NYU-Depth v2 datasets have one")


@torch.no_grad()
def format_results(cfg: Config, checkpoint: str, out_dir: str | os.PathLike, overlay: bool = False,
                   device: str = "auto") -> dict:
    """Predict every ``data.val`` sample with ``checkpoint``'s primary model (the task's inference: whole /
    sliding window, scales, flips as configured) and write the result files under ``out_dir``; returns (and
    writes as ``out_dir/predictions.json``) ``{'dataset', 'split', 'samples', 'files': {kind: n}, 'folders',
    'overlays'}``."""
    from densekd.data.transforms import denormalize
    from densekd.engine import distributed as dist
    from densekd.engine.builder import build_dataset, build_task, build_val_loader
    from densekd.engine.checkpoint import load_checkpoint
    from densekd.engine.deploy import normalisation
    from densekd.engine.evaluate import checkpoint_models, to_device
    from densekd.engine.visualize import save_png

    if dist.world_size() > 1:
        raise ValueError("--format-only runs in one process (not under torchrun)")
    dev = dist.setup(device)
    ckpt = load_checkpoint(checkpoint)
    val = build_dataset(cfg, "val")
    if val is None:
        raise ValueError("the config has no data.val dataset to predict")
    check_dataset(val)
    task = build_task(cfg, val)
    model = next(iter(checkpoint_models(cfg, ckpt, source=str(checkpoint)).values())).to(dev).eval()
    key = str(cfg.get("student_input", "image"))
    norm = normalisation(cfg)
    out_dir = Path(out_dir)
    loader = build_val_loader(cfg, val, rank=0, world=1)
    counts: dict[str, int] = {}
    folders: dict[str, str] = {}
    overlays, index = 0, 0
    for batch in loader:
        images = batch.get("image")
        batch = to_device(batch, dev)
        if key not in batch:
            raise KeyError(f"the model reads batch[{key!r}] but data.val's samples have {sorted(batch)}")
        pred = task.predict(model, batch[key])
        n = batch[key].shape[0]
        for b in range(n):
            if "index" in batch and int(batch["index"][b]) != index:
                raise RuntimeError(f"the loader yielded sample {int(batch['index'][b])} where {index} was expected")
            one = {k: v[b].cpu() for k, v in pred.items()} if isinstance(pred, dict) else pred[b].cpu()
            for kind, result in task.result_maps(one):
                rel = val.result_path(index, kind)
                write_png(out_dir / rel, val.encode_result(kind, result))
                counts[kind] = counts.get(kind, 0) + 1
                folders.setdefault(kind, str(out_dir / Path(rel).parts[0]))
            if overlay:
                if images is None:
                    raise ValueError("--overlay draws over batch['image'], which data.val's samples do not have")
                picture = task.draw_overlay(denormalize(images[b], **norm), one)
                save_png(out_dir / "overlay" / f"{val.sample_id(index)}.png", picture)
                overlays += 1
            index += 1
    manifest = dict(dataset=type(val).__name__, split=getattr(val, "split", None), samples=index, files=counts,
                    folders=folders, overlays=(str(out_dir / "overlay") if overlays else None),
                    checkpoint=str(checkpoint), config=str(cfg.filename))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "predictions.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
