"""Turn a validated config into datasets, models, teachers and a distiller."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from densekd.config import Config, ConfigError, config_name
from densekd.engine.checkpoint import load_weights
from densekd.registry import DATASETS, MODELS, TASKS


def _dataset_dicts(node):
    """Every dataset dict in a data section, nested wrappers included."""
    if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"] in DATASETS:
        yield node
        for v in node.values():
            yield from _dataset_dicts(v)


def use_synthetic(cfg: Config) -> None:
    """Replace every real dataset by its registered synthetic stand-in (``cls.synthetic``)."""
    for split in ("train", "val"):
        for ds in _dataset_dicts(cfg.get("data", {}).get(split)):
            standin = getattr(DATASETS.get(ds["type"]), "synthetic", None)
            if standin:
                ds["type"] = standin
                ds.pop("root", None)


def set_data_root(cfg: Config, root: str) -> None:
    """Point every real dataset of the config at ``root`` (``--data-root``)."""
    found = False
    for split in ("train", "val"):
        for ds in _dataset_dicts(cfg.get("data", {}).get(split)):
            if getattr(DATASETS.get(ds["type"]), "synthetic", None):
                ds["root"] = root
                found = True
    if not found:
        raise ConfigError("--data-root was given but the config has no dataset with a `root` to set")


def build_datasets(cfg: Config):
    data = cfg.get("data") or {}
    if "train" not in data:
        raise ConfigError("config has no data.train dataset")
    train = DATASETS.build(copy.deepcopy(data["train"]), where="data.train")
    val = DATASETS.build(copy.deepcopy(data["val"]), where="data.val") if data.get("val") else None
    return train, val


def build_task(cfg: Config):
    return TASKS.build(copy.deepcopy(cfg.get("task", dict(type="classification"))), where="task")


def build_model(model_cfg: dict, where: str = "model") -> nn.Module:
    return MODELS.build(copy.deepcopy(model_cfg), where=where)


def teacher_configs(cfg: Config) -> list[dict]:
    if cfg.get("teachers"):
        return list(cfg["teachers"])
    return [cfg["teacher"]] if cfg.get("teacher") else []


def build_teachers(cfg: Config, synthetic: bool, warn=warnings.warn) -> tuple[list[nn.Module], list[str], list[bool]]:
    """Build and load every teacher: (teachers, their input keys, which ones are untrained).

    A missing checkpoint is an error naming the command that trains it; with ``--synthetic`` it is a
    warning and the teacher keeps its random initialisation (see :func:`calibrate_batchnorm`)."""
    teachers, inputs, untrained = [], [], []
    for i, tcfg in enumerate(teacher_configs(cfg)):
        model = build_model(tcfg["model"], where=f"teacher {i} model")
        ckpt = tcfg.get("checkpoint")
        untrained.append(not (ckpt and Path(ckpt).is_file()))
        if not untrained[-1]:
            load_weights(model, ckpt, what=f"teacher {i}")
        else:
            how = (f"Train it first with: python tools/train.py {tcfg['config']} (its best weights land in "
                   f"work_dirs/{config_name(tcfg['config'])}/checkpoints/best.pth), or set "
                   f"--cfg-options teacher.checkpoint=PATH") if tcfg.get("config") else \
                "Set --cfg-options teacher.checkpoint=PATH to a trained teacher."
            msg = f"Teacher {i} ({tcfg['model'].get('type')}) checkpoint not found: {ckpt!r}. {how}"
            if not synthetic:
                raise FileNotFoundError(msg)
            warn(msg + " [--synthetic: continuing with a randomly initialised teacher]")
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        teachers.append(model)
        inputs.append(tcfg.get("input", "image"))
    return teachers, inputs, untrained


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches, input_key: str = "image") -> None:
    """Set every BatchNorm's running statistics to the exact averages over ``batches``.

    A randomly initialised network in eval mode normalises with mean 0 / variance 1, and
    its activations explode with depth; smoke runs with untrained teachers calibrate them
    first so that their features (and the losses built on them) have realistic scales.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    for batch in batches:
        model(batch[input_key])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


def probe_images(dataset, n: int = 2) -> torch.Tensor:
    """A small batch of training images for observing feature shapes."""
    from densekd.data.sampling import forked_rng

    with forked_rng(0):
        return torch.stack([dataset[i]["image"] for i in range(min(n, len(dataset)))])
