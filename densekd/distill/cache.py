"""The offline teacher cache, teacher side: what identifies the teachers and taps a cache was written for, the
start-up check of a cache against the run, and writing the cache of a config (``tools/cache_teacher.py``).

A teacher is identified by the SHA-256 of its weights and buffers as the run uses them (``weights_sha256``: after its
checkpoint is loaded, or, for a ``--synthetic`` teacher without a checkpoint, after its BatchNorm calibration on the
run's first batches), so another checkpoint, another architecture or another calibration is caught whatever the
file is called; the checkpoint's path and file SHA-256 (or ``'random-init'``) are recorded beside it for the
message. The taps a cache must hold for teacher ``i`` are :meth:`Distiller.teacher_tap_paths` (every term's,
initialisation-stage terms included); a cache may hold more. The file format is :mod:`densekd.data.teacher_cache`.
"""
from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Callable

import torch

from densekd import __version__
from densekd.data.finite_views import view_dataset
from densekd.data.sampling import collate_samples
from densekd.data.teacher_cache import FIX, CacheMismatch, cache_bytes, h5_name, write_cache


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 of a model's state dict: every entry's name, dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for name, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        h.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checkpoint(tcfg: dict) -> str | None:
    ckpt = tcfg.get("checkpoint")
    return str(ckpt) if ckpt and Path(ckpt).is_file() else None


def check_cache(attrs: dict, distiller, teacher_cfgs: list[dict], path: str) -> None:
    """Raise a one-line :class:`CacheMismatch` when the cache (its :func:`~densekd.data.teacher_cache.read_attrs`)
    was written for other teachers, other weights, another teacher input or lacks a tap the terms read."""
    cached = attrs["teachers"]
    where = f"teacher_cache={path!r}"
    if len(cached) != len(distiller.teachers):
        raise CacheMismatch(f"{where} holds {len(cached)} teacher(s), the config has {len(distiller.teachers)}; write "
                            f"the cache for this config: {FIX}")
    for i, (rec, teacher, tcfg) in enumerate(zip(cached, distiller.teachers, teacher_cfgs)):
        if rec["weights_sha256"] != weights_sha256(teacher):
            now = _checkpoint(tcfg) or "random-init"
            raise CacheMismatch(f"{where} was written for other weights of teacher {i} ({rec['model'].get('type')}, "
                                f"checkpoint {rec['checkpoint']}, sha256 {rec['checkpoint_sha256'][:12]}) than the "
                                f"run's ({tcfg['model'].get('type')}, checkpoint {now}); write it again: {FIX}")
        if rec["input"] != distiller.teacher_inputs[i]:
            raise CacheMismatch(f"{where}: teacher {i} read batch[{rec['input']!r}] when cached, the config feeds it "
                                f"batch[{distiller.teacher_inputs[i]!r}]; write it again: {FIX}")
        missing = [p for p in distiller.teacher_tap_paths(i) if h5_name(i, p) not in attrs["datasets"]]
        if missing:
            raise CacheMismatch(f"{where} lacks teacher {i}'s taps {missing} that the distill terms read (it holds "
                                f"{rec['taps']}); write it again for this config: {FIX}")


def write_config_cache(cfg, out: str | Path, *, synthetic: bool = False, dtype: str = "float16",
                       compression: str = "lzf", batch_size: int = 256, max_gb: float = 20.0,
                       device: torch.device = torch.device("cpu"), log: Callable[[str], None] = print,
                       progress: Callable[[int], Callable[[int], None]] | None = None, resume: bool = True) -> Path:
    """Build the run of ``cfg`` (without its ``teacher_cache``) as training would -- global seed, training set,
    student and teachers in the trainer's order, teachers with their checkpoints or calibration, distillation
    terms -- and write the cache of every (sample, view) of its
    training set to ``out``. ``log`` hears the planned size first; above ``max_gb`` GB it is refused.
    ``progress(total) -> update(n)`` reports the (sample, view) pairs done (tqdm in the tool). An interrupted write
    of the same plan is continued unless ``resume=False`` (:func:`~densekd.data.teacher_cache.write_cache`)."""
    from densekd.engine.builder import (build_dataset, build_strategy, build_task, calibration_batches,
                                        per_process_batch, strategy_class, strategy_config, teacher_configs)
    from densekd.strategies.base import BuildContext

    cfg = copy.deepcopy(cfg)
    cfg.pop("teacher_cache", None)
    if not getattr(strategy_class(cfg), "reads_teacher_cache", False):
        raise ValueError(f"strategy {strategy_config(cfg)['type']!r} runs its teachers on inputs it makes "
                         f"itself; only the 'distillation' strategy reads a teacher cache")
    from densekd.engine.trainer import seed_everything

    seed = int(cfg.get("seed", 0))
    seed_everything(seed)  # as the trainer: a teacher without checkpoint starts from the same random weights
    train_set = build_dataset(cfg, "train")
    base = view_dataset(train_set)
    batch = per_process_batch(int((cfg.get("data") or {}).get("batch_size", 64)), 1, "data.batch_size")
    ctx = BuildContext(cfg=cfg, task=build_task(cfg, train_set), train_set=train_set, iters_per_epoch=1,
                       synthetic=synthetic, warn=lambda msg: log(f"warning: {msg}"),
                       calibration_batches=lambda: calibration_batches(train_set, batch, seed))
    distiller = build_strategy(cfg, ctx).distiller
    if not distiller.teachers:
        raise ValueError("the config has no teacher: there is nothing to cache")
    tcfgs = teacher_configs(cfg)
    records = [dict(model=tcfg["model"], checkpoint=_checkpoint(tcfg) or "random-init",
                    checkpoint_sha256=file_sha256(_checkpoint(tcfg)) if _checkpoint(tcfg) else "random-init",
                    weights_sha256=weights_sha256(t), input=distiller.teacher_inputs[i],
                    taps=distiller.teacher_tap_paths(i)) for i, (t, tcfg) in enumerate(zip(distiller.teachers, tcfgs))]
    distiller.teachers_to(device)

    def forward(b: dict) -> dict:
        b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        collect = distiller.teacher_taps(b)
        return {i: dict(zip(r["taps"], collect[i](r["taps"]))) for i, r in enumerate(records)}

    probe = forward(collate_samples(base, [base.view_item(0, 0)]))
    taps = {i: {p: tuple(x.shape[1:]) for p, x in probe[i].items()} for i in probe}
    for r, i in zip(records, taps):
        r["shapes"] = {p: list(s) for p, s in taps[i].items()}
    n, v = len(base), int(base.num_views)
    size = cache_bytes(n, v, [s for t in taps.values() for s in t.values()], dtype)
    described = ", ".join(f"teacher {i} {p} {'x'.join(map(str, s)) or 'scalar'}" for i in taps for p, s in taps[i].items())
    log(f"teacher cache: {n} samples x {v} views of {type(base).__name__}, taps {described}, {dtype}: "
        f"{size / 1e9:.3g} GB before compression -> {out}")
    if size > max_gb * 1e9:
        raise ValueError(f"the teacher cache would take {size / 1e9:.3g} GB (> --max-gb {max_gb:g}); raise --max-gb, "
                         f"use --dtype float16, or tap fewer teacher layers in the distill terms ({described})")
    attrs = dict(densekd_version=__version__, dataset=type(base).__name__,
                 dataset_config=(cfg.get("data") or {}).get("train"), teachers=records)
    with torch.inference_mode():
        return write_cache(out, base, forward, taps, attrs, dtype=dtype, compression=compression,
                           batch_size=batch_size, progress=progress(n * v) if progress else None, resume=resume,
                           log=log)
