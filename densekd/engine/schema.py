"""Validation of a densekd config: every key must mean something.

Plain sections (``train``, ``data``...) have a fixed set of keys; typed dicts
(``dict(type=...)``) are checked against the registered constructor's real
parameters. Names starting with ``_`` are private helpers of a config file
and are ignored. Errors name the key, the file that set it, and the closest
valid names.
"""
from __future__ import annotations

from densekd.config import Config, ConfigError
from densekd.distill.distiller import TERM_KEYS
from densekd.registry import DATASETS, LOSSES, MODELS, STRATEGIES, TASKS, Registry, RegistryError, did_you_mean

TOP_LEVEL = {
    "task": "TASKS", "model": "MODELS", "teacher": "teacher", "teachers": "teacher_list", "distill": "terms",
    "task_weight": None, "data": "data", "optimizer": "optimizer", "lr_schedule": "lr_schedule",
    "train": "train", "seed": None, "work_dir": None, "deterministic": None, "description": None,
    "strategy": "STRATEGIES", "student_input": None, "load_from": "load_from", "freeze": None,
    "probe": "probe", "synthesis": "synthesis", "freeze_bn_stats": None, "teacher_cache": "teacher_cache",
}
MOVED = {  # keys that moved, with where they live now
    "train.init_epochs": "strategy.init_epochs (the distillation strategy's initialisation phase)",
    "train.init_lr": "strategy.init_lr (the distillation strategy's initialisation phase)",
}
SECTIONS = {
    "data": {"train", "val", "batch_size", "val_batch_size", "num_workers", "pin_memory", "drop_last",
             "persistent_workers", "prefetch_factor"},
    "optimizer": {"type", "lr", "momentum", "weight_decay", "nesterov", "dampening", "betas", "eps",
                  "no_decay_norm_bias", "amsgrad", "param_groups"},
    "lr_schedule": {"type", "milestones", "gamma", "power", "min_lr_ratio", "by_epoch", "warmup_iters",
                    "warmup_ratio"},
    "train": {"epochs", "iters", "eval_interval", "log_interval", "checkpoint_interval", "grad_clip",
              "accumulate", "amp", "channels_last", "skip_nonfinite", "check_finite", "compile",
              "find_unused_parameters", "sync_bn", "eval_first", "max_consecutive_skips"},
    "teacher": {"model", "checkpoint", "config", "input"},
    # linear probing (densekd.probe, tools/linear_probe.py); densekd.probe.settings.ProbeSettings documents them
    "probe": {"layer", "mode", "model", "input", "target", "data", "augment", "num_classes", "ignore_index",
              "batch_size", "num_workers", "heldout", "seed", "wd_grid", "max_iter", "dense_epochs", "dense_lr",
              "dense_batch_size", "dense_pool", "cache_dtype", "cache_dir"},
}


def _unknown(key: str, dotted: str, valid, cfg: Config) -> ConfigError:
    if dotted in MOVED:
        return ConfigError(f"Config key {dotted!r} (set in {cfg.source_of(dotted)}) has moved: set {MOVED[dotted]}")
    return ConfigError(f"Unknown config key {dotted!r} (set in {cfg.source_of(dotted)}).{did_you_mean(key, valid)} "
                       f"Valid keys here: {', '.join(sorted(valid))}")


def _check_section(value, dotted: str, allowed: set[str], cfg: Config) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"Config key {dotted!r} (set in {cfg.source_of(dotted)}) must be a dict, got {value!r}")
    for k in value:
        if k not in allowed:
            raise _unknown(k, f"{dotted}.{k}", allowed, cfg)


def _check_typed(value, dotted: str, registry: Registry, cfg: Config, skip=()) -> None:
    if not isinstance(value, dict) or "type" not in value:
        raise ConfigError(f"Config key {dotted!r} (set in {cfg.source_of(dotted)}) must be dict(type=..., ...), "
                          f"got {value!r}")
    if isinstance(value["type"], str):
        try:
            registry.get(value["type"])
        except RegistryError as exc:
            raise ConfigError(f"{dotted}.type (set in {cfg.source_of(dotted + '.type')}): {exc}") from None
        for k in value:
            if k == "type" or k in skip:
                continue
            try:
                registry.check_kwargs(value["type"], [k])
            except RegistryError as exc:
                raise ConfigError(f"Unknown config key {dotted + '.' + k!r} (set in "
                                  f"{cfg.source_of(dotted + '.' + k)}): {exc}") from None
    if registry is DATASETS:  # wrapped datasets (e.g. CRDSampleDataset(dataset=dict(type=...)))
        for k, v in value.items():
            if isinstance(v, dict) and isinstance(v.get("type"), str) and v["type"] in DATASETS:
                _check_typed(v, f"{dotted}.{k}", DATASETS, cfg)


def ensure_valid(cfg: Config) -> None:
    """Validate ``cfg`` unless it was validated already and has not changed since (validation runs once)."""
    if getattr(cfg, "_validated_dump", None) != cfg.dump():
        validate(cfg)


def validate(cfg: Config) -> None:
    """Raise :class:`ConfigError` on any unknown key, with where it came from and close matches."""
    for key, value in cfg.items():
        if key.startswith("_"):
            continue
        if key not in TOP_LEVEL:
            raise _unknown(key, key, TOP_LEVEL, cfg)
        kind = TOP_LEVEL[key]
        if kind in SECTIONS:
            _check_section(value, key, SECTIONS[kind], cfg)
        if kind == "TASKS":
            _check_typed(value, key, TASKS, cfg)
        elif kind == "MODELS":
            _check_typed(value, key, MODELS, cfg)
        elif kind == "STRATEGIES":
            from densekd.engine.builder import strategy_config

            _check_typed(strategy_config(cfg) if isinstance(value, dict) else value, key, STRATEGIES, cfg,
                         skip=("ctx",))
        elif kind == "teacher":
            _check_teacher(value, key, cfg)
        elif kind == "teacher_list":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"'teachers' (set in {cfg.source_of(key)}) must be a list of teacher dicts")
            for i, t in enumerate(value):
                _check_section(t, f"teachers.{i}", SECTIONS["teacher"], cfg)
                _check_teacher(t, f"teachers.{i}", cfg)
        elif kind == "terms":
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"'distill' (set in {cfg.source_of(key)}) must be a list of dict(type=...) terms")
            for i, term in enumerate(value):
                _check_typed(term, f"distill.{i}", LOSSES, cfg, skip=TERM_KEYS)
        elif kind == "data":
            for split in ("train", "val"):
                if split in value and value[split] is not None:
                    _check_typed(value[split], f"data.{split}", DATASETS, cfg)
        elif kind == "load_from":
            from densekd.engine.builder import load_from_spec

            _check_parsed(load_from_spec, value, key, cfg)
        elif kind == "probe":
            _check_probe(value, cfg)
        elif kind == "teacher_cache":
            from densekd.data.teacher_cache import config_path

            _check_parsed(config_path, value, key, cfg)
        elif kind == "synthesis":
            if value is not None:  # the section of tools/synthesize.py; its own module checks it (training ignores it)
                from densekd.synthesis.settings import check_section

                check_section(value, cfg)
    rules = cfg.get_path("optimizer.param_groups")
    if rules is not None:
        from densekd.engine.optim import check_group_rules

        try:
            check_group_rules(rules)
        except ValueError as exc:
            raise ConfigError(f"{exc} (set in {cfg.source_of('optimizer.param_groups')})") from None
    if "teacher" in cfg and "teachers" in cfg:
        raise ConfigError("Give either `teacher` or `teachers`, not both "
                          f"(teacher set in {cfg.source_of('teacher')}, teachers in {cfg.source_of('teachers')})")
    from densekd.config import NUMERIC_KEYS

    for dotted in sorted(NUMERIC_KEYS):
        value = cfg.get_path(dotted)
        if isinstance(value, (str, bytes)):
            raise ConfigError(f"Config key {dotted!r} (set in {cfg.source_of(dotted)}) takes a number; got the string "
                              f"{value!r}")
    train = cfg.get("train", {})
    if "epochs" in train and "iters" in train and train["epochs"] and train["iters"]:
        raise ConfigError(f"train.epochs and train.iters are both set ({cfg.source_of('train.epochs')}, "
                          f"{cfg.source_of('train.iters')}); a schedule is either epoch- or iteration-based: "
                          f"set the other to None")
    cfg._validated_dump = cfg.dump()


def _check_parsed(parse, value, key: str, cfg: Config) -> None:
    """A set top-level key that ``parse(value)`` accepts; its error gains where the key was set."""
    if value:
        try:
            parse(value)
        except ValueError as exc:  # ConfigError included
            raise ConfigError(f"{exc} (set in {cfg.source_of(key)})") from None


def _check_probe(value, cfg: Config) -> None:
    if value is None:
        return
    _check_section(value, "probe", SECTIONS["probe"], cfg)
    if value.get("model") is not None:
        _check_typed(value["model"], "probe.model", MODELS, cfg)
    data = value.get("data")
    if data is not None:
        _check_section(data, "probe.data", {"train", "val"}, cfg)
        for split in ("train", "val"):
            if data.get(split) is not None:
                _check_typed(data[split], f"probe.data.{split}", DATASETS, cfg)
    if value.get("mode", "auto") not in ("auto", "global", "dense"):
        raise ConfigError(f"probe.mode (set in {cfg.source_of('probe.mode')}) must be 'auto', 'global' (pooled "
                          f"features, a linear classifier) or 'dense' (per-pixel features, a 1x1 conv head); got "
                          f"{value['mode']!r}")


def _check_teacher(value, dotted: str, cfg: Config) -> None:
    if "model" not in value:
        raise ConfigError(f"{dotted} (set in {cfg.source_of(dotted)}) needs a `model=dict(type=...)`")
    _check_typed(value["model"], f"{dotted}.model", MODELS, cfg)
