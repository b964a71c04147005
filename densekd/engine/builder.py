"""Named builders: a validated config -> task, datasets and loaders, models and teachers, the strategy.

The trainer, ``tools/test.py``, ``tools/benchmark.py`` and the strategies build through these functions, so
each piece is made one way everywhere. Batch sizes: ``data.batch_size`` and ``data.val_batch_size`` are both
GLOBAL (summed over processes); each process loads ``size // world_size`` (:func:`per_process_batch`).
``val_batch_size`` defaults to ``batch_size``.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from densekd.config import Config, ConfigError, config_name
from densekd.data.sampling import build_loader
from densekd.engine.checkpoint import load_checkpoint, load_partial_state, load_weights, model_state_from
from densekd.registry import DATASETS, MODELS, TASKS
from densekd.tasks.base import dataset_metadata


def _dataset_dicts(node):
    """Every dataset dict in a data section, nested wrappers included."""
    if isinstance(node, dict) and isinstance(node.get("type"), str) and node["type"] in DATASETS:
        yield node
        for v in node.values():
            yield from _dataset_dicts(v)


def _config_datasets(cfg: Config):
    """Every dataset dict of the config: ``data.train``, ``data.val`` and the probe's ``probe.data.train`` /
    ``probe.data.val`` (:mod:`densekd.probe`), nested wrappers included."""
    sections = [cfg.get("data") or {}, ((cfg.get("probe") or {}).get("data") or {})]
    for section in sections:
        for split in ("train", "val"):
            yield from _dataset_dicts(section.get(split))


def use_synthetic(cfg: Config) -> None:
    """Replace every real dataset by its registered synthetic stand-in (``cls.synthetic``)."""
    for ds in _config_datasets(cfg):
        standin = getattr(DATASETS.get(ds["type"]), "synthetic", None)
        if standin:
            ds["type"] = standin
            ds.pop("root", None)


def real_dataset_types() -> list[str]:
    """Registered dataset types that read real files (those with a synthetic stand-in)."""
    return sorted(name for name in DATASETS.names() if getattr(DATASETS.get(name), "synthetic", None))


def data_roots(value) -> str | dict[str, str] | None:
    """``--data-root`` as given: ``None``, one path for every real dataset (``'data/x'`` or ``['data/x']``), or one
    root per dataset type (``['CIFAR100=/d/c100', 'STL10=/d/stl10']`` or a dict) for configs and pipelines that read
    several datasets (CRD Table 4: CIFAR-100, STL-10, TinyImageNet). Types are matched case-insensitively."""
    if value is None or isinstance(value, dict):
        return value
    items = [value] if isinstance(value, (str, Path)) else list(value)
    if not items:
        return None
    pairs = [str(v) for v in items if "=" in str(v)]
    if not pairs:
        if len(items) > 1:
            raise ConfigError(f"--data-root got {len(items)} paths {items}; give one path for every dataset, or one "
                              f"root per dataset type as TYPE=PATH (e.g. --data-root CIFAR100=data/cifar100 "
                              f"STL10=data/stl10)")
        return str(items[0])
    if len(pairs) != len(items):
        raise ConfigError(f"--data-root mixes a plain path with TYPE=PATH entries ({items}); give either one path "
                          f"or TYPE=PATH for every dataset")
    known = {t.lower(): t for t in real_dataset_types()}
    roots: dict[str, str] = {}
    for item in pairs:
        name, _, path = item.partition("=")
        if name.strip().lower() not in known:
            raise ConfigError(f"--data-root {item}: {name!r} is not a dataset type that reads files; use one of "
                              f"{', '.join(known.values())}")
        if not path:
            raise ConfigError(f"--data-root {item}: no path after '='")
        roots[known[name.strip().lower()]] = path
    return roots


def config_data_folders(cfg: Config) -> dict[str, list[str]]:
    """``{type: [root, ...]}`` of the real datasets a config reads (after ``--synthetic``, none)."""
    folders: dict[str, list[str]] = {}
    for ds in _config_datasets(cfg):
        if getattr(DATASETS.get(ds["type"]), "synthetic", None):
            roots = folders.setdefault(ds["type"], [])
            if str(ds.get("root")) not in roots:
                roots.append(str(ds.get("root")))
    return folders


def shared_root_error(root: str, folders: dict[str, list[str]], where: str,
                      readers: dict[str, list[str]] | None = None) -> str | None:
    """Why one ``--data-root`` path cannot serve datasets kept in different folders (CIFAR-100, STL-10 and
    TinyImageNet in CRD Table 4; NYU's labeled and raw sets share one folder and may share the root), or None.
    ``readers``: the stages reading each type, for a pipeline's message."""
    distinct = {r for roots in folders.values() for r in roots}
    if len(distinct) <= 1:
        return None
    listing = "; ".join(f"{t} ({', '.join(roots + (readers or {}).get(t, []))})" for t, roots in folders.items())
    return (f"--data-root {root}: {where} reads datasets from {len(distinct)} folders [{listing}], which cannot "
            f"share one root; give one per dataset: --data-root " + " ".join(f"{t}=PATH" for t in folders))


def set_data_root(cfg: Config, root, *, required: bool = True) -> list[str]:
    """Point the config's real datasets at ``--data-root`` (see :func:`data_roots`): one path sets every real
    dataset's ``root`` (refused when the config keeps its datasets in different folders); a ``{type: path}``
    mapping sets the datasets of those types and leaves the others at their config's root. Returns the types
    set. ``required``: fail when nothing was set (a single config; pipeline stages pass False, since one root
    per type need not concern every stage, and the pipeline checks the whole)."""
    roots = data_roots(root)
    if roots is None:
        return []
    folders = config_data_folders(cfg)
    if isinstance(roots, str):
        problem = shared_root_error(roots, folders, "this config") if required else None
        if problem:
            raise ConfigError(problem)
        roots = {t: roots for t in folders}
    for ds in _config_datasets(cfg):
        if ds["type"] in roots:
            ds["root"] = roots[ds["type"]]
    done = [t for t in folders if t in roots]
    if required and not done:
        raise ConfigError("--data-root was given but the config has no dataset with a `root` to set" if not folders
                          else f"--data-root names {', '.join(roots)} but the config reads {', '.join(folders)}")
    return done


def build_dataset(cfg: Config, split: str):
    """The config's ``data.<split>`` dataset, or None when the config has none (only that split is read)."""
    data = cfg.get("data") or {}
    if not data.get(split):
        return None
    return DATASETS.build(copy.deepcopy(data[split]), where=f"data.{split}")


def build_datasets(cfg: Config):
    data = cfg.get("data") or {}
    if "train" not in data:
        raise ConfigError("config has no data.train dataset")
    return build_dataset(cfg, "train"), build_dataset(cfg, "val")


def build_task(cfg: Config, dataset=None):
    """The config's task; the dataset's metadata (class names, palette) fill what the task config leaves unset."""
    meta = dataset_metadata(dataset) if dataset is not None else {}
    return TASKS.build(copy.deepcopy(cfg.get("task", dict(type="classification"))), where="task", **meta)


def per_process_batch(global_batch: int, world: int, what: str) -> int:
    """``global_batch // world``; a global batch that does not divide by the process count is an error."""
    if global_batch < 1 or global_batch % world:
        raise ValueError(f"{what}={global_batch} is the global batch (summed over processes) and must be a "
                         f"positive multiple of the {world} processes")
    return global_batch // world


def loader_options(data: dict, pin_memory: bool) -> dict:
    """The loader settings of a ``data`` section: ``num_workers`` (capped by the usable cores), ``pin_memory``
    (default: on for CUDA runs), ``persistent_workers`` (keep the workers between epochs; default off) and
    ``prefetch_factor`` (batches each worker loads ahead; PyTorch's default 2)."""
    prefetch = data.get("prefetch_factor")
    return dict(num_workers=int(data.get("num_workers", 0)), pin_memory=bool(data.get("pin_memory", pin_memory)),
                persistent_workers=bool(data.get("persistent_workers", False)),
                prefetch_factor=None if prefetch is None else int(prefetch))


def build_train_loader(cfg: Config, dataset, seed: int, rank: int, world: int, pin_memory: bool):
    data = cfg.get("data", {})
    batch = per_process_batch(int(data.get("batch_size", 64)), world, "data.batch_size")
    return build_loader(dataset, batch, shuffle=True, drop_last=bool(data.get("drop_last", False)), train=True,
                        seed=seed, rank=rank, world_size=world, **loader_options(data, pin_memory))


def build_val_loader(cfg: Config, dataset, rank: int, world: int, pin_memory: bool = False, seed: int = 0):
    """The evaluation loader: ``data.val_batch_size`` (global, default ``data.batch_size``) split over processes,
    in order, every sample once."""
    data = cfg.get("data", {})
    global_batch = int(data.get("val_batch_size", data.get("batch_size", 64)))
    batch = per_process_batch(global_batch, world, "data.val_batch_size")
    return build_loader(dataset, batch, shuffle=False, train=False, seed=seed, rank=rank, world_size=world,
                        **loader_options(data, pin_memory))


DEFAULT_STRATEGY = "distillation"


def strategy_config(cfg) -> dict:
    """A copy of the config's ``strategy`` section with its ``type``: a missing section, or one without a type,
    means (adjusts) the default strategy ``'distillation'``."""
    scfg = copy.deepcopy(dict(cfg.get("strategy") or {}))
    scfg.setdefault("type", DEFAULT_STRATEGY)
    return scfg


def build_strategy(cfg: Config, ctx):
    """The config's strategy (:func:`strategy_config`) built with the run's BuildContext."""
    from densekd.registry import STRATEGIES

    return STRATEGIES.build(strategy_config(cfg), where="strategy", ctx=ctx)


def strategy_class(cfg: Config):
    from densekd.registry import STRATEGIES

    return STRATEGIES.get(strategy_config(cfg)["type"])


def build_model(model_cfg: dict, where: str = "model") -> nn.Module:
    return MODELS.build(copy.deepcopy(model_cfg), where=where)


LOAD_FROM_KEYS = ("path", "exclude", "strict")


def load_from_spec(value) -> dict:
    """``load_from`` as ``dict(path=..., exclude=[...], strict=True)``: a string is the path alone."""
    if isinstance(value, (str, Path)):
        return dict(path=str(value), exclude=[], strict=True)
    if not isinstance(value, dict):
        raise ConfigError(f"load_from must be a checkpoint path or dict(path=..., exclude=[...], strict=True); got "
                          f"{value!r}")
    from densekd.registry import did_you_mean

    for key in value:
        if key not in LOAD_FROM_KEYS:
            raise ConfigError(f"Unknown config key 'load_from.{key}'.{did_you_mean(key, LOAD_FROM_KEYS)} Valid keys "
                              f"here: {', '.join(LOAD_FROM_KEYS)}")
    path = value.get("path")
    if not isinstance(path, (str, Path)) or not str(path):
        raise ConfigError(f"load_from needs path=... (the checkpoint); got {value!r}")
    exclude = value.get("exclude") or []
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    if not all(isinstance(p, str) and p for p in exclude):
        raise ConfigError(f"load_from.exclude takes parameter-name patterns such as ['fc'] or ['fc.*', 'head.*']; "
                          f"got {value.get('exclude')!r}")
    strict = value.get("strict", True)
    if not isinstance(strict, bool):
        raise ConfigError(f"load_from.strict must be True or False; got {strict!r}")
    return dict(path=str(path), exclude=exclude, strict=strict)


def build_student(cfg: Config, info=None, warn=None) -> nn.Module:
    """The config's ``model``, initialised from ``load_from`` when the config sets it -- e.g. a pipeline stage
    starting from an earlier stage's best.pth -- with the submodules listed in ``freeze`` frozen
    (:func:`freeze_modules`) and, with ``freeze_bn_stats``, every BatchNorm's statistics fixed (:func:`freeze_bn_stats`).

    ``load_from`` is a path (a densekd checkpoint's model weights or a plain state dict, every weight must fit)
    or ``dict(path=..., exclude=['fc'], strict=True)``: the parameters matching ``exclude`` (module paths or
    fnmatch patterns of state-dict names) keep their fresh initialisation (a new head on distilled features);
    ``strict=False`` loads what fits (same name and shape) and reports the rest. What was loaded and what was
    not goes to ``info`` (``warn`` when something did not fit without being excluded)."""
    model = build_model(cfg["model"])
    if cfg.get("load_from"):
        spec = load_from_spec(cfg["load_from"])
        path = spec["path"]
        if not Path(path).is_file():
            raise FileNotFoundError(f"load_from={path!r}: no such checkpoint; train the run that writes it first "
                                    f"or fix the path")
        ckpt = load_checkpoint(path)
        report = load_partial_state(model, model_state_from(ckpt), exclude=spec["exclude"], strict=spec["strict"],
                                    what="load_from", source=path, ckpt=ckpt)
        surprising = report["missing"] or report["unexpected"] or report["mismatched"]
        say = warn if surprising and warn is not None else info
        if say is not None:
            say("load_from: " + report.line(path))
    if cfg.get("freeze"):
        freeze_modules(model, cfg["freeze"])
    if cfg.get("freeze_bn_stats"):
        freeze_bn_stats(model)
    return model


def freeze_bn_stats(model: nn.Module) -> list[nn.Module]:
    """Keep every BatchNorm of ``model`` in eval mode, whatever mode the model is in: it normalises with its
    running statistics, which no longer change; its affine weight and bias still train (``freeze`` fixes those
    too). The config key ``freeze_bn_stats=True`` (e.g. distilling on Gaussian noise, whose statistics would
    overwrite those of the real images the student is evaluated on -- The Knowledge Within's Gaussian scheme;
    meaningful for a student that starts from trained weights, ``load_from``)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise ConfigError(f"freeze_bn_stats=True, but {type(model).__name__} has no BatchNorm layer")
    for m in norms:
        m.register_forward_pre_hook(_stay_in_eval)
    return norms


def _stay_in_eval(module: nn.Module, _args) -> None:
    if module.training:
        module.eval()


def freeze_modules(model: nn.Module, paths) -> list[nn.Module]:
    """Freeze the submodules at ``paths`` (module paths, e.g. ``['stem', 'layer1', 'layer2']``): their
    parameters get ``requires_grad=False`` (so no optimiser holds them) and they always run in eval mode
    (BatchNorm keeps its running statistics), whatever mode the rest of the model is in. Frozen features for
    linear probing: freeze everything but the classifier."""
    from densekd.distill.taps import TapError, resolve_module

    if isinstance(paths, str):
        paths = [paths]
    frozen = []
    for path in paths:
        try:
            module = resolve_module(model, path)
        except TapError as exc:
            raise ConfigError(f"freeze: {exc} (python tools/list_taps.py CONFIG lists the module paths)") from None
        for p in module.parameters():
            p.requires_grad_(False)
        module.register_forward_pre_hook(_stay_in_eval)
        frozen.append(module)
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"freeze={list(paths)} freezes every parameter of {type(model).__name__}; leave the part "
                          f"that should train (e.g. the classifier 'fc') out of the list")
    return frozen


def teacher_configs(cfg: Config) -> list[dict]:
    if cfg.get("teachers"):
        return list(cfg["teachers"])
    return [cfg["teacher"]] if cfg.get("teacher") else []


def build_teachers(cfg: Config, synthetic: bool, warn=warnings.warn) -> tuple[list[nn.Module], list[str], list[bool]]:
    """Build and load every teacher: (teachers, their input keys, which ones are untrained).

    A missing checkpoint is an error naming the command that trains it; with ``--synthetic`` it is a
    warning and the teacher keeps its random initialisation (see :func:`calibrate_batchnorm`). The teachers
    are returned in eval mode; the distiller freezes them."""
    teachers, inputs, untrained = [], [], []
    for i, tcfg in enumerate(teacher_configs(cfg)):
        model = build_model(tcfg["model"], where=f"teacher {i} model")
        ckpt = tcfg.get("checkpoint")
        untrained.append(not (ckpt and Path(ckpt).is_file()))
        if not untrained[-1]:
            load_weights(model, ckpt, what=f"teacher {i}")
        else:
            weights = getattr(MODELS.get(tcfg["model"]["type"]), "weights_file", None) \
                if isinstance(tcfg["model"].get("type"), str) else None
            how = (f"Train it first with: python tools/train.py {tcfg['config']} (its best weights land in "
                   f"work_dirs/{config_name(tcfg['config'])}/checkpoints/best.pth), or set "
                   f"--cfg-options teacher.checkpoint=PATH") if tcfg.get("config") else \
                (f"Put {weights} at that path, or set --cfg-options teacher.checkpoint=PATH." if weights else
                 "Set --cfg-options teacher.checkpoint=PATH to a trained teacher.")
            msg = f"Teacher {i} ({tcfg['model'].get('type')}) checkpoint not found: {ckpt!r}. {how}"
            if not synthetic:
                raise FileNotFoundError(msg)
            warn(msg + " [--synthetic: continuing with a randomly initialised teacher]")
        model.eval()
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


def calibration_batches(dataset, batch_size: int, seed: int, n: int = 4):
    """``n`` batches of the first samples of ``dataset`` (outside the training order's RNG, under
    ``forked_rng(seed + 1)``) for calibrating untrained teachers (:func:`calibrate_batchnorm`); the trainer and
    ``tools/cache_teacher.py`` calibrate on the same ones."""
    from densekd.data.sampling import collate_samples, forked_rng

    size = min(len(dataset), batch_size)
    with forked_rng(seed + 1):
        for b in range(n):
            items = [dataset[(b * size + i) % len(dataset)] for i in range(size)]
            yield collate_samples(dataset, items)


def with_teacher_cache(cfg: Config, train_set):
    """The training set read through the config's ``teacher_cache`` (a file of ``tools/cache_teacher.py``; see
    :mod:`densekd.data.teacher_cache`), or ``train_set`` itself when the config sets none. Only a strategy that
    declares ``reads_teacher_cache`` takes one."""
    if not cfg.get("teacher_cache"):
        return train_set
    from densekd.data.teacher_cache import config_path, wrap_view_dataset

    if not getattr(strategy_class(cfg), "reads_teacher_cache", False):
        raise ConfigError(f"teacher_cache is set, but strategy {strategy_config(cfg)['type']!r} runs its teachers on "
                          f"inputs it makes itself (or has none); only the 'distillation' strategy reads a teacher "
                          f"cache: remove teacher_cache")
    return wrap_view_dataset(train_set, config_path(cfg["teacher_cache"]))


def probe_batch(dataset, n: int = 2) -> dict:
    """A small collated batch of training samples (outside the training RNG) for observing feature shapes."""
    from densekd.data.sampling import collate_samples, forked_rng

    with forked_rng(0):
        return collate_samples(dataset, [dataset[i] for i in range(min(n, len(dataset)))])
