"""Resume consistency: the config a checkpoint was trained with, and the records written after it.

``--resume`` continues a run only with the config it was trained with (:func:`config_drift`): a changed key
stops the resume naming each change, except the keys of :data:`SAFE_ON_RESUME`, which change how the run is
logged, evaluated, checkpointed or loaded but not what it learns (a warning names them). Records that a
killed run wrote after its last checkpoint are dropped from ``metrics.jsonl`` (:func:`rewind_metrics`): the
resumed run writes them again, identically, so the file ends as an uninterrupted run's.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from densekd.engine.checkpoint import atomic_write_text

SAFE_ON_RESUME = frozenset({
    "train.log_interval", "train.eval_interval", "train.checkpoint_interval", "train.eval_first",
    "train.skip_nonfinite", "train.check_finite", "train.compile", "train.max_consecutive_skips",
    "train.find_unused_parameters",
    "data.num_workers", "data.pin_memory", "data.persistent_workers", "data.prefetch_factor", "data.val_batch_size",
    "work_dir", "description",
})
"""Keys that may change on ``--resume`` (with a warning): logging, evaluation and checkpoint cadence, loader
processes, the evaluation batch, handling of non-finite steps. Besides, every ``root`` of a dataset (where the
same files live now), every ``index_cache`` (where a file listing is cached) and the ``probe`` section (how the
run is judged afterwards, :mod:`densekd.probe`) may change."""


def parse_dump(text: str) -> dict:
    """A resolved config as ``Config.dump()`` wrote it (Python assignments of literals) -> dict."""
    namespace: dict[str, Any] = {"nan": math.nan, "inf": math.inf}
    exec(compile(text, "<stored config>", "exec"), namespace)  # noqa: S102 - our own dump
    return {k: v for k, v in namespace.items() if not k.startswith("__") and k not in ("nan", "inf")}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def _same(a: Any, b: Any) -> bool:
    return a == b or repr(a) == repr(b)  # nan == nan; (1, 2) vs [1, 2] differ


def is_safe(key: str) -> bool:
    return key in SAFE_ON_RESUME or (key.startswith("data.") and key.endswith((".root", ".index_cache"))) or \
        key == "probe" or key.startswith("probe.")


_MISSING = object()


def config_drift(stored: str | None, cfg) -> tuple[list[str], list[str]]:
    """``(refused, warned)``: ``'key (old -> new)'`` for every key whose value differs between the config stored
    in a checkpoint (its ``Config.dump()``) and ``cfg``; the safe ones are in ``warned``. A checkpoint without a
    readable stored config gives ``([], [reason])``."""
    if not isinstance(stored, str):
        return [], ["the checkpoint stores no config to compare with"]
    try:
        old = flatten(parse_dump(stored))
    except Exception as exc:  # noqa: BLE001
        return [], [f"the checkpoint's stored config could not be read ({type(exc).__name__}: {exc})"]
    new = flatten(cfg.to_dict())
    refused, warned = [], []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, _MISSING), new.get(key, _MISSING)
        if a is not _MISSING and b is not _MISSING and _same(a, b):
            continue
        shown = f"{key} ({'unset' if a is _MISSING else repr(a)[:60]} -> {'unset' if b is _MISSING else repr(b)[:60]})"
        (warned if is_safe(key) else refused).append(shown)
    return refused, warned


def rewind_metrics(path: str | os.PathLike, ckpt: dict) -> int:
    """Drop the lines of ``metrics.jsonl`` written after checkpoint ``ckpt`` (training lines past its iteration,
    evaluations past it or not recorded in it, phase lines past its phase iterations, a torn last line).
    Returns how many were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    it = int(ckpt["iter"])
    phases = dict(ckpt.get("phase_iters") or {})
    evaluated = ckpt.get("last_eval_iter")
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        late = False
        if "split" in entry:
            late = entry.get("iter", 0) > it or (entry.get("iter") == it and evaluated != it)
        elif "iter" in entry:
            late = entry["iter"] > it
        else:
            late = any(entry.get(f"{p}_iter", 0) > n for p, n in phases.items())
        if late:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        atomic_write_text("".join(ln + "\n" for ln in keep), path)
    return dropped
