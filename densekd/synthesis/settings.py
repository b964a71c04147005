"""The ``synthesis`` config section: what ``tools/synthesize.py`` and ``kind='synthesize'`` pipeline stages read.

    synthesis = dict(
        method='deepinversion',                    # 'deepinversion' | 'bns' | 'inception' | 'gaussian'
        loss=dict(bn=10.0, tv_l2=2.5e-5),          # the method's weights (its constructor's parameters)
        teacher=dict(model=dict(type='resnet32x4', num_classes=100), checkpoint='.../best.pth', config='...'),
        student=None,                              # Adaptive DeepInversion's competitor: dict(model=..., checkpoint=...)
        num_images=50000, batch_size=256,
        iterations=2000,                           # per batch; or phases=[dict(iterations=2000, downsample=2), ...]
        optimizer=dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8),                        # Adam on the images
        lr_schedule=dict(type='constant'),         # or dict(type='cosine', warmup_iters=100)
        jitter=2, flip=False, clip=False, keep='last',
        image_size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD,
        labels='balanced',                         # 'balanced' (image i: class i mod K) | 'random' | None
        num_classes=None,                          # default: the teacher's output width
        seed=0, checkpoint_interval=100, log_interval=100, output=None,   # output default WORK_DIR/images.h5
    )

:class:`SynthesisSettings` checks every key (a misspelt one is an error with the closest names) and the
method's ``loss`` weights against its constructor. ``checkpoint_interval``, ``log_interval`` and ``output`` may
change between a stopped synthesis and its continuation; every other setting is part of the run's fingerprint.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any

from densekd.config import Config, ConfigError
from densekd.registry import SYNTHESIS_METHODS, RegistryError, did_you_mean

KEYS = ("method", "loss", "teacher", "student", "num_images", "batch_size", "iterations", "phases", "optimizer",
        "lr_schedule", "jitter", "flip", "clip", "keep", "image_size", "mean", "std", "labels", "num_classes", "seed",
        "checkpoint_interval", "log_interval", "output")
SAFE_KEYS = ("checkpoint_interval", "log_interval", "output")
NET_KEYS = ("model", "checkpoint", "config")
OPTIMIZER_KEYS = ("type", "lr", "betas", "eps", "weight_decay")
SCHEDULE_KEYS = ("type", "warmup_iters")
PHASE_KEYS = ("iterations", "downsample")
LABELS = ("balanced", "random", None)


def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"synthesis.{name} must be an int or a (height, width) pair; got {value!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"synthesis.{name} must be positive; got {value!r}")
    return h, w


def _check_keys(value: Any, where: str, allowed) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a dict; got {value!r}")
    for k in value:
        if k not in allowed:
            raise ConfigError(f"Unknown config key '{where}.{k}'.{did_you_mean(k, allowed)} Valid keys here: "
                              f"{', '.join(allowed)}")
    return value


@dataclass
class SynthesisSettings:
    method: str = "deepinversion"
    loss: dict = field(default_factory=dict)
    teacher: dict | None = None
    student: dict | None = None
    num_images: int = 256
    batch_size: int = 256
    iterations: int = 2000
    phases: list | None = None
    optimizer: dict = field(default_factory=lambda: dict(type="Adam", lr=0.05, betas=(0.9, 0.999), eps=1e-8,
                                                         weight_decay=0.0))
    lr_schedule: dict = field(default_factory=lambda: dict(type="constant", warmup_iters=0))
    jitter: int = 2
    flip: bool = False
    clip: bool = False
    keep: str = "last"
    image_size: tuple = (32, 32)
    mean: tuple = (0.5071, 0.4867, 0.4408)
    std: tuple = (0.2675, 0.2565, 0.2761)
    labels: str | None = "balanced"
    num_classes: int | None = None
    seed: int = 0
    checkpoint_interval: int = 100
    log_interval: int = 100
    output: str | None = None

    @classmethod
    def from_config(cls, cfg: Config | dict) -> "SynthesisSettings":
        section = (cfg.get("synthesis") if hasattr(cfg, "get") else None)
        if not section:
            raise ConfigError("the config has no `synthesis = dict(method=..., teacher=dict(model=..., checkpoint=...), "
                              "...)` section (see densekd/synthesis/settings.py)")
        check_section(section)
        s = cls()
        for k, v in copy.deepcopy(section).items():
            setattr(s, k, v)
        s._normalise()
        return s

    def _normalise(self) -> None:
        self.optimizer = {**dict(type="Adam", lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0),
                          **(self.optimizer or {})}
        if self.optimizer["type"] != "Adam":
            raise ConfigError(f"synthesis.optimizer.type: images are optimised with Adam (DeepInversion's optimiser); "
                              f"got {self.optimizer['type']!r}")
        self.optimizer["betas"] = tuple(float(b) for b in self.optimizer["betas"])
        self.lr_schedule = {**dict(type="constant", warmup_iters=0), **(self.lr_schedule or {})}
        if self.lr_schedule["type"] not in ("constant", "cosine"):
            raise ConfigError(f"synthesis.lr_schedule.type must be 'constant' or 'cosine' (DeepInversion's "
                              f"lr_cosine_policy, linear warm-up then cosine to 0); got {self.lr_schedule['type']!r}")
        self.image_size = _pair(self.image_size, "image_size")
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"synthesis.mean / std are the 3 RGB normalisation values of the teacher's input; got "
                              f"{self.mean} / {self.std}")
        for key in ("num_images", "batch_size"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"synthesis.{key} must be >= 1; got {getattr(self, key)!r}")
            setattr(self, key, int(getattr(self, key)))
        if self.labels not in LABELS:
            raise ConfigError(f"synthesis.labels must be 'balanced', 'random' or None; got {self.labels!r}")
        if self.keep not in ("last", "best"):
            raise ConfigError(f"synthesis.keep must be 'last' (the images after the last step) or 'best' (those of "
                              f"the lowest loss); got {self.keep!r}")
        if self.phases is None:
            self.phases = [dict(iterations=int(self.iterations), downsample=1)]
        if not isinstance(self.phases, (list, tuple)) or not self.phases:
            raise ConfigError(f"synthesis.phases must be a list of dict(iterations=N, downsample=F); got {self.phases!r}")
        phases = []
        for i, p in enumerate(self.phases):
            _check_keys(p, f"synthesis.phases.{i}", PHASE_KEYS)
            p = dict(dict(iterations=int(self.iterations), downsample=1), **p)
            if int(p["iterations"]) < 0 or int(p["downsample"]) < 1:
                raise ConfigError(f"synthesis.phases.{i}: iterations >= 0 and downsample >= 1; got {p}")
            phases.append(dict(iterations=int(p["iterations"]), downsample=int(p["downsample"])))
        self.phases = phases
        self.jitter = int(self.jitter)
        for key in ("checkpoint_interval", "log_interval"):
            setattr(self, key, max(int(getattr(self, key)), 1))

    # -- derived ----------------------------------------------------------------------------------------------
    @property
    def num_batches(self) -> int:
        return -(-self.num_images // self.batch_size)

    def batch_size_of(self, b: int) -> int:
        return min(self.batch_size, self.num_images - b * self.batch_size)

    def capped(self, max_iters: int | None) -> "SynthesisSettings":
        """A smoke run's settings: every phase at most ``max_iters`` iterations and a single batch."""
        if max_iters is None:
            return self
        s = copy.deepcopy(self)
        s.phases = [dict(p, iterations=min(p["iterations"], int(max_iters))) for p in s.phases]
        s.num_images = min(s.num_images, s.batch_size)
        return s

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def fingerprint_dict(self) -> dict:
        d = self.as_dict()
        for k in SAFE_KEYS + ("iterations",):  # iterations lives on in phases
            d.pop(k, None)
        return json.loads(json.dumps(d, default=str))


def fingerprint(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_section(section: Any, cfg: Config | None = None) -> None:
    """Every key of the ``synthesis`` section and of its sub-dicts is known; the method exists and takes the
    ``loss`` weights. Raises ConfigError."""
    where = (lambda k: f" (set in {cfg.source_of('synthesis.' + k)})") if cfg is not None else (lambda k: "")
    _check_keys(section, "synthesis", KEYS)
    method = section.get("method", "deepinversion")
    try:
        SYNTHESIS_METHODS.get(method)
    except RegistryError as exc:
        raise ConfigError(f"synthesis.method{where('method')}: {exc}") from None
    loss = section.get("loss") or {}
    _check_keys(loss, "synthesis.loss", list(loss))
    for k in loss:
        try:
            SYNTHESIS_METHODS.check_kwargs(method, [k], where="synthesis.loss")
        except RegistryError as exc:
            raise ConfigError(f"Unknown config key 'synthesis.loss.{k}'{where('loss.' + k)}: {exc}") from None
        if k in ("teacher", "student"):
            raise ConfigError(f"synthesis.loss.{k}: set synthesis.{k}=dict(model=..., checkpoint=...) instead")
    for net in ("teacher", "student"):
        value = section.get(net)
        if value is None:
            if net == "teacher":
                raise ConfigError("synthesis.teacher is required: dict(model=dict(type=...), checkpoint=PATH)")
            continue
        _check_keys(value, f"synthesis.{net}", NET_KEYS)
        if not isinstance(value.get("model"), dict) or "type" not in value["model"]:
            raise ConfigError(f"synthesis.{net} needs model=dict(type=...)")
        from densekd.registry import MODELS

        try:
            MODELS.get(value["model"]["type"])
            for k in value["model"]:
                if k != "type":
                    MODELS.check_kwargs(value["model"]["type"], [k], where=f"synthesis.{net}.model")
        except RegistryError as exc:
            raise ConfigError(f"synthesis.{net}.model{where(net)}: {exc}") from None
    for key, allowed in (("optimizer", OPTIMIZER_KEYS), ("lr_schedule", SCHEDULE_KEYS)):
        if section.get(key) is not None:
            _check_keys(section[key], f"synthesis.{key}", allowed)
