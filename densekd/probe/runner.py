"""One linear probe: config + checkpoint -> frozen model -> cached tap features -> linear classifier -> summary.

    summary = run_probe(cfg, 'work_dirs/x/checkpoints/best.pth', 'work_dirs/x/linear_probe/feats-1',
                        layer='feats[-1]')

writes ``probe_summary.json``, ``probe_summary.md`` and ``probe.log`` in the work dir and caches the features
under ``WORK_DIR/features/`` (or ``probe.cache_dir``). See :mod:`densekd.probe.settings` for the config section,
:mod:`densekd.probe.features` for the cache and :mod:`densekd.probe.linear` for the recipe.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densekd.config import Config, ConfigError, config_name
from densekd.data.sampling import build_loader
from densekd.engine import distributed as dist
from densekd.engine.builder import build_model
from densekd.engine.checkpoint import CheckpointError, atomic_write_text, load_checkpoint, load_state
from densekd.probe.features import FeatureCache, NoLabelsError, extract, file_sha256, log, resolve_tap
from densekd.probe.linear import probe_dense, probe_global
from densekd.probe.settings import ProbeSettings
from densekd.registry import DATASETS, signature_params

SUMMARY = "probe_summary.json"
REPORT = "probe_summary.md"
PRIMARY = {"global": "linear_probe_top1", "dense": "linear_probe_miou"}
METRIC_NAMES = {"top1": "linear_probe_top1", "top5": "linear_probe_top5", "mIoU": "linear_probe_miou",
                "pixel_acc": "linear_probe_pixel_acc", "mean_acc": "linear_probe_mean_acc"}


def _progress(iterable, **kw):
    from tqdm import tqdm

    return tqdm(iterable, disable=None, leave=False, **kw)  # disable=None: silent when stderr is not a terminal


def tap_slug(layer: str) -> str:
    """A folder name for a tap: ``feats[-1]`` -> ``feats-1``, ``encoder.layer4`` -> ``encoder.layer4``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "", layer.replace(":", "-")) or "tap"


def default_work_dir(cfg: Config, checkpoint: str, layer: str) -> Path:
    """``<run dir>/linear_probe/<tap>/`` for a checkpoint in a run's ``checkpoints/`` folder, else
    ``work_dirs/<config name>/linear_probe/<tap>/``."""
    ckpt = Path(checkpoint)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else Path("work_dirs") / config_name(cfg.filename)
    return run_dir / "linear_probe" / tap_slug(layer)


# -- the model -------------------------------------------------------------------------------------------------
def checkpoint_weights(ckpt: Any, path: str) -> Mapping:
    """The model weights of a densekd checkpoint (``model``) or a plain state dict, or a CheckpointError."""
    if isinstance(ckpt, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(ckpt.get(key), Mapping) and ckpt[key]:
                return ckpt[key]
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return ckpt
        keys = sorted(map(str, ckpt))[:8]
        raise CheckpointError(f"checkpoint {path} holds no model weights (a dict with keys {keys}, without a 'model' "
                              f"entry of weights); give checkpoints/best.pth or last.pth of a training run, or a state "
                              f"dict (parameter name -> tensor)")
    raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not model weights; give "
                          f"checkpoints/best.pth or last.pth of a training run, or a state dict")


def frozen_model(model_cfg: dict, checkpoint: str, device: torch.device) -> torch.nn.Module:
    """``model_cfg`` built, loaded from ``checkpoint`` (every weight must fit), in eval mode without gradients."""
    if not Path(checkpoint).exists():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint} (give the best.pth / last.pth of a training run, "
                                f"e.g. work_dirs/<config>/checkpoints/best.pth)")
    ckpt = load_checkpoint(checkpoint)
    model = build_model(model_cfg, where="probe model")
    load_state(model, checkpoint_weights(ckpt, checkpoint), what="probed model", source=str(checkpoint), ckpt=ckpt)
    model.eval().requires_grad_(False)
    return model.to(device)


# -- the data --------------------------------------------------------------------------------------------------
def _set_augment(node: Any, value: bool, keep_explicit: bool) -> None:
    """``augment=value`` on every dataset dict inside ``node`` whose type takes it."""
    if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"] in DATASETS:
        params, _ = signature_params(DATASETS.get(node["type"]))
        if "augment" in params and not (keep_explicit and "augment" in node):
            node["augment"] = value
        for v in node.values():
            _set_augment(v, value, keep_explicit)


def probe_dataset_configs(cfg: Config, settings: ProbeSettings) -> dict[str, tuple[dict, str]]:
    """``{'train': (dataset dict, where), 'val': ...}``: ``probe.data`` where given, else the config's ``data``,
    with ``probe.augment`` applied."""
    out = {}
    own = settings.data or {}
    for split in ("train", "val"):
        if own.get(split) is not None:
            ds, where, explicit = copy.deepcopy(own[split]), f"probe.data.{split}", True
        elif (cfg.get("data") or {}).get(split) is not None:
            ds, where, explicit = copy.deepcopy(cfg["data"][split]), f"data.{split}", False
        else:
            what = "train on" if split == "train" else "evaluate on"
            raise ConfigError(f"the probe needs a labelled {split} split to {what}: set probe.data.{split} (or "
                              f"data.{split}) to a dataset")
        _set_augment(ds, bool(settings.augment), keep_explicit=explicit)
        out[split] = (ds, where)
    return out


def check_labels(dataset, where: str, target: str, mode: str) -> str:
    """The probe mode for ``dataset`` (``'dense'`` when its labels are maps), or a :class:`NoLabelsError` when its
    first sample has no class labels under ``target``."""
    sample = dataset[0]
    name = type(dataset).__name__
    fix = "probe on a labelled split (probe.data.train / probe.data.val) or name the label key (probe.target)"
    if not isinstance(sample, Mapping) or target not in sample:
        keys = sorted(sample) if isinstance(sample, Mapping) else type(sample).__name__
        raise NoLabelsError(f"the probe dataset {name} ({where}) has no labels: its samples have no {target!r} "
                            f"(they have {keys}); {fix}")
    value = sample[target]
    arr = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if arr.is_floating_point():
        raise NoLabelsError(f"the probe dataset {name} ({where}) has no class labels: its {target!r} is a float "
                            f"{'map' if arr.dim() else 'value'} {tuple(arr.shape)} (depth or a regression target), "
                            f"not class ids; {fix}")
    if arr.dim() == 0 and int(arr) < 0:
        raise NoLabelsError(f"the probe dataset {name} ({where}) is unlabelled (its first {target!r} is {int(arr)}); "
                            f"{fix}")
    found = "dense" if arr.dim() >= 2 else "global"
    if mode == "dense" and found != "dense":
        raise NoLabelsError(f"probe.mode='dense' needs label maps, but {name} ({where}) yields one class id per "
                            f"sample under {target!r}; use mode='global'")
    return found if mode == "auto" else mode


def _num_classes(settings: ProbeSettings, cfg: Config, dataset, labels: list[np.ndarray], ignore: int) -> int:
    for value in (settings.num_classes, getattr(dataset, "num_classes", None), (cfg.get("task") or {}).get("num_classes")):
        if isinstance(value, int) and value > 0:
            return value
    top = max(int(np.max(np.where(lab == ignore, -1, lab), initial=-1)) for lab in labels)
    if top < 0:
        raise NoLabelsError("the probe's labels are all ignore_index; nothing to learn from")
    return top + 1


def _check_label_values(labels: np.ndarray, k: int, mode: str, ignore: int, split: str, where: str) -> None:
    lab = np.asarray(labels)
    valid = lab != ignore if mode == "dense" else np.ones(lab.shape, dtype=bool)
    if not valid.any():
        raise NoLabelsError(f"the probe's {split} split ({where}) has no labelled pixels (all {ignore}); {where} must "
                            f"be a labelled split")
    bad = valid & ((lab < 0) | (lab >= k))
    if bad.any():
        values = sorted(set(np.unique(lab[bad]).tolist()))[:6]
        what = "unlabelled samples (label < 0)" if (lab[bad] < 0).any() and mode == "global" else "labels"
        raise NoLabelsError(f"the probe's {split} split ({where}) has {what} outside 0..{k - 1}: {values}; probe on a "
                            f"labelled split, or set probe.num_classes / probe.ignore_index")


# -- the probe -------------------------------------------------------------------------------------------------
def run_probe(cfg: Config, checkpoint: str, work_dir: str | Path | None = None, *, layer: str | None = None,
              mode: str | None = None, device: str = "auto", max_steps: int | None = None,
              cache_dir: str | None = None) -> dict:
    """Linear-probe ``checkpoint``'s features at the tap ``layer`` (default ``probe.layer``) and write the summary;
    returns it. ``max_steps`` caps every fit's optimisation steps (L-BFGS iterations, dense SGD steps: a smoke
    run, e.g. a pipeline's ``--max-iters``)."""
    t_start = time.perf_counter()
    settings = ProbeSettings.from_config(cfg, layer=layer, mode=mode, cache_dir=cache_dir)
    if not settings.layer:
        raise ConfigError("the probe needs a tap: give --layer TAP (or probe.layer in the config); python "
                          "tools/list_taps.py CONFIG lists them")
    work_dir = Path(work_dir) if work_dir is not None else default_work_dir(cfg, checkpoint, settings.layer)
    work_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(work_dir / "probe.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        return _run(cfg, str(checkpoint), work_dir, settings, device, max_steps, t_start)
    finally:
        log.removeHandler(handler)
        handler.close()


def _run(cfg: Config, checkpoint: str, work_dir: Path, settings: ProbeSettings, device: str, max_steps: int | None,
         t_start: float) -> dict:
    dev = dist.setup(device)
    model_cfg = settings.model or cfg["model"]
    model = frozen_model(model_cfg, checkpoint, dev)
    tap = resolve_tap(model, settings.layer)
    input_key = settings.input or str(cfg.get("student_input", "image"))
    sha = file_sha256(checkpoint)
    log.info(f"probing {checkpoint} (sha256 {sha[:12]}) at tap {settings.layer!r} ({tap}) of "
             f"{model_cfg.get('type')}, input {input_key!r}; work dir {work_dir}")

    data_cfg = cfg.get("data") or {}
    batch = int(settings.batch_size or data_cfg.get("val_batch_size") or data_cfg.get("batch_size") or 64)
    workers = int(settings.num_workers if settings.num_workers is not None else data_cfg.get("num_workers", 0))
    cache = FeatureCache(settings.cache_dir or work_dir / "features")
    splits: dict[str, dict] = {}
    mode = settings.mode
    for split, (ds_cfg, where) in probe_dataset_configs(cfg, settings).items():
        dataset = DATASETS.build(copy.deepcopy(ds_cfg), where=where)
        mode = check_labels(dataset, where, settings.target, mode)
        parts = {"checkpoint_sha256": sha, "model": model_cfg, "tap": tap, "input": input_key,
                 "target": settings.target, "mode": mode, "dense_pool": int(settings.dense_pool) if mode == "dense" else 1,
                 "dtype": settings.cache_dtype, "dataset": ds_cfg, "num_samples": len(dataset)}
        loader = build_loader(dataset, batch, shuffle=False, train=False, seed=0, num_workers=workers,
                              pin_memory=dev.type == "cuda")

        def run_extraction(folder, loader=loader, dataset=dataset, split=split):
            return extract(model, loader, len(dataset), tap, input_key, settings.target, mode, folder,
                           dense_pool=int(settings.dense_pool), dtype=settings.cache_dtype,
                           label_dtype=np.int16 if mode == "dense" else np.int64, device=dev, progress=_progress,
                           desc=f"extract {split}")

        splits[split] = dict(cache.get_or_extract(split, parts, run_extraction), where=where, dataset=dataset)

    labels = [np.array(s["labels_array"]) for s in splits.values()]  # a copy in memory (the cache stays read-only)
    k = _num_classes(settings, cfg, splits["train"]["dataset"], labels, settings.ignore_index)
    for (split, s), lab in zip(splits.items(), labels):
        _check_label_values(lab, k, mode, settings.ignore_index, split, s["where"])
    grid = settings.grid(mode)
    common = dict(heldout=float(settings.heldout), seed=int(settings.seed), progress=_progress, log=log.info)
    tr, te = splits["train"], splits["val"]
    if mode == "global":
        max_iter = int(settings.max_iter) if max_steps is None else max(1, min(int(settings.max_iter), int(max_steps)))
        result = probe_global(torch.as_tensor(np.array(tr["features_array"], dtype=np.float32), device=dev),
                              torch.as_tensor(labels[0], dtype=torch.int64, device=dev),
                              torch.as_tensor(np.array(te["features_array"], dtype=np.float32), device=dev),
                              torch.as_tensor(labels[1], dtype=torch.int64, device=dev),
                              k, grid, max_iter=max_iter, **common)
        recipe = {"classifier": "multinomial logistic regression on standardised features, full-batch L-BFGS",
                  "max_iter": max_iter}
    else:
        result = probe_dense(tr["features_array"], tr["labels_array"], te["features_array"], te["labels_array"], k, grid,
                             epochs=int(settings.dense_epochs), lr=float(settings.dense_lr),
                             batch_size=int(settings.dense_batch_size), ignore_index=int(settings.ignore_index),
                             max_steps=max_steps, device=dev, **common)
        recipe = {"classifier": "1x1 conv on standardised per-pixel features, scores upsampled to the labels",
                  "optimizer": "SGD momentum 0.9, cosine lr", "epochs": int(settings.dense_epochs),
                  "lr": float(settings.dense_lr), "batch_size": int(settings.dense_batch_size),
                  "ignore_index": int(settings.ignore_index), "dense_pool": int(settings.dense_pool)}
    metrics = {METRIC_NAMES[name]: value for name, value in result["metrics"].items()}
    total = time.perf_counter() - t_start
    summary = {
        "config": cfg.filename, "checkpoint": str(checkpoint), "checkpoint_sha256": sha,
        "layer": settings.layer, "tap": tap, "input": input_key, "target": settings.target, "mode": mode,
        "model": model_cfg.get("type"), "num_classes": k,
        "primary_metric": PRIMARY[mode], "metrics": metrics, "final": metrics, "best": metrics,
        "wd": result["wd"], "selected_by": result["selected_by"], "wd_grid": sorted(grid), "sweep": result["sweep"],
        "recipe": dict(recipe, heldout=float(settings.heldout), seed=int(settings.seed),
                       standardisation="mean / std of the train split's features"),
        "split_sizes": {"train": int(len(labels[0])), "val": int(len(labels[1])), "fit": result["n_fit"],
                        "heldout": result["n_heldout"]},
        "feature_dim": int(tr["features_array"].shape[1]),
        "features": {split: {"shape": list(s["features_array"].shape), "labels_shape": list(s["labels_array"].shape),
                             "dataset": s["where"], "cache": s["path"], "reused": s["reused"]}
                     for split, s in splits.items()},
        "timings_s": {"extract_train": tr["extract_s"], "extract_val": te["extract_s"], **result["timings_s"],
                      "total": total},
        "time_s": total, "completed": True, "max_iters": max_steps,
        **({"train_top1": result["train_top1"]} if "train_top1" in result else {}),
    }
    write_summary(summary, work_dir)
    log.info(f"{PRIMARY[mode]} {metrics[PRIMARY[mode]]:.2f} with wd {result['wd']:g} ({total:.1f} s); wrote "
             f"{work_dir / SUMMARY}")
    return summary


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def markdown(summary: dict) -> str:
    """The summary as a small Markdown report: the result row, then the weight-decay sweep."""
    metric_cols = list(summary["metrics"])
    lines = [f"# Linear probe: {summary['checkpoint']} at {summary['layer']}", "",
             f"| layer | mode | feature dim | classes | wd | {' | '.join(metric_cols)} |",
             "|" + "---|" * (5 + len(metric_cols)),
             f"| {summary['layer']} | {summary['mode']} | {summary['feature_dim']} | {summary['num_classes']} | "
             f"{summary['wd']:g} | " + " | ".join(_num(summary["metrics"][c]) for c in metric_cols) + " |", ""]
    if summary["sweep"]:
        key = "heldout_top1" if summary["mode"] == "global" else "heldout_mIoU"
        lines += [f"Weight decay chosen by {summary['selected_by']} on {summary['split_sizes']['heldout']} held-out "
                  f"train samples:", "", f"| wd | held-out {key.split('_', 1)[1]} | |", "|---|---|---|"]
        lines += [f"| {r['wd']:g} | {_num(r[key])} | {'chosen' if r['wd'] == summary['wd'] else ''} |"
                  for r in summary["sweep"]]
        lines.append("")
    else:
        lines += [f"Weight decay: {summary['selected_by']}.", ""]
    t = summary["timings_s"]
    reused = [s for s, f in summary["features"].items() if f["reused"]]
    lines.append(f"Time: {t['total']:.1f} s (extraction {t['extract_train'] + t['extract_val']:.1f} s"
                 f"{', cached features reused for ' + ', '.join(reused) if reused else ''}; sweep {t['sweep']:.1f} s; "
                 f"final fit {t['final']:.1f} s).")
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, work_dir: Path) -> None:
    atomic_write_text(json.dumps(summary, indent=2, default=float) + "\n", Path(work_dir) / SUMMARY)
    atomic_write_text(markdown(summary), Path(work_dir) / REPORT)


def read_summary(work_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(work_dir) / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
