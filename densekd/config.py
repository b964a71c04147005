"""Python config files with ``_base_`` inheritance and command-line overrides.

A config is a ``.py`` file whose public top-level names are the settings::

    _base_ = ['../_base_/datasets/cifar100.py', '../_base_/default_runtime.py']
    model = dict(type='resnet20', num_classes=100)

Bases are merged in order, then the file itself on top. Dicts merge key by
key (recursively); anything else, lists included, is replaced. A child dict
with ``_delete_=True`` replaces its base instead of merging into it.

Every leaf remembers the file (or ``--cfg-options``) that set it, so a
validation error can say where a misspelt key came from.
"""
from __future__ import annotations

import ast
import copy
import os
import pprint
import runpy
import types
from pathlib import Path
from typing import Any

from densekd.registry import did_you_mean

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"


class ConfigError(ValueError):
    """A config that cannot be loaded or does not validate."""


class Config(dict):
    """A nested dict of settings plus the provenance of every key.

    ``cfg.sources['optimizer.lr']`` is the file (or ``'--cfg-options'``) that
    set that key last. Attribute access (``cfg.model``) reads keys.
    """

    def __init__(self, data: dict | None = None, sources: dict[str, str] | None = None, filename: str = ""):
        super().__init__(data or {})
        self.sources: dict[str, str] = dict(sources or {})
        self.filename = filename

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}.{did_you_mean(key, self)}") from None

    def source_of(self, dotted: str) -> str:
        """The file that set ``dotted`` or its closest set ancestor."""
        parts = dotted.split(".")
        while parts:
            key = ".".join(parts)
            if key in self.sources:
                return self.sources[key]
            parts.pop()
        return self.filename or "<config>"

    def get_path(self, dotted: str, default: Any = None) -> Any:
        node: Any = self
        for part in dotted.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and _is_index(part) and -len(node) <= int(part) < len(node):
                node = node[int(part)]
            else:
                return default
        return node

    def dump(self) -> str:
        """Python source that loads back to the same settings."""
        lines = [f"# resolved from {self.filename or '<config>'}"]
        for key, value in self.items():
            lines.append(f"{key} = {pprint.pformat(value, indent=1, width=100, sort_dicts=False)}")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self))


def _is_index(s: str) -> bool:
    return s.lstrip("-").isdigit()


def _public_names(namespace: dict) -> dict:
    return {
        k: v
        for k, v in namespace.items()
        if not k.startswith("__")
        and k != BASE_KEY
        and not isinstance(v, (types.ModuleType, types.FunctionType, type))
    }


def _record_sources(value: Any, prefix: str, source: str, sources: dict[str, str]) -> None:
    sources[prefix] = source
    if isinstance(value, dict):
        for k, v in value.items():
            if k != DELETE_KEY:
                _record_sources(v, f"{prefix}.{k}", source, sources)


def _drop_sources(prefix: str, sources: dict[str, str]) -> None:
    for key in [k for k in sources if k == prefix or k.startswith(prefix + ".")]:
        del sources[key]


def merge_into(base: dict, child: dict, source: str, sources: dict[str, str], prefix: str = "",
               keep_delete: bool = False) -> dict:
    """Deep-merge ``child`` into ``base`` in place, recording provenance. ``keep_delete`` (while loading files)
    keeps the ``_delete_`` marks in ``base`` so that a base file's replacement still replaces what its sibling
    bases set when that file is merged in turn; :func:`load_config` strips them at the end."""
    for key, value in child.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value.get(DELETE_KEY):
            kept = value if keep_delete else {k: v for k, v in value.items() if k != DELETE_KEY}
            _drop_sources(path, sources)
            base[key] = copy.deepcopy(kept)
            _record_sources(kept, path, source, sources)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            sources[path] = source
            merge_into(base[key], value, source, sources, path + ".", keep_delete)
        else:
            _drop_sources(path, sources)
            base[key] = copy.deepcopy(value)
            _record_sources(value, path, source, sources)
    return base


def _strip_delete(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, list):
        return [_strip_delete(v) for v in value]
    return value


def _load_file(path: Path, stack: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    if not path.is_file():
        where = f" (a _base_ of {stack[-1]})" if stack else ""
        raise ConfigError(f"Config file not found: {path}{where}")
    if path in stack:
        chain = " -> ".join(str(p) for p in stack + (path,))
        raise ConfigError(f"Circular _base_ inheritance: {chain}")
    if path.suffix != ".py":
        raise ConfigError(f"Config files are Python files (.py); got {path}")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:  # surface syntax errors etc. with the file name
        raise ConfigError(f"Could not execute config {path}: {type(exc).__name__}: {exc}") from exc
    bases = namespace.get(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    sources: dict[str, str] = {}
    for base in bases:
        base_path = (path.parent / base).resolve()
        data, src = _load_file(base_path, stack + (path,))
        merge_into(merged, data, "", sources, keep_delete=True)  # provenance comes from src below
        sources.update(src)
    merge_into(merged, _public_names(namespace), str(path), sources, keep_delete=True)
    return merged, sources


def _literal(node: ast.AST) -> Any:
    """``ast.literal_eval`` plus ``dict(k=v, ...)`` calls, as configs write them."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


_WORDS = {"true": True, "false": False, "none": None, "null": None, "nan": float("nan"), "+nan": float("nan"),
          "-nan": float("nan"), "inf": float("inf"), "+inf": float("inf"), "-inf": float("-inf"),
          "infinity": float("inf"), "+infinity": float("inf"), "-infinity": float("-inf")}


class _NonFinite(ast.NodeTransformer):
    """``nan`` / ``inf`` names inside a literal (``[1, inf]``) as float constants."""

    def visit_Name(self, node: ast.Name):
        if node.id.lower() in _WORDS and isinstance(_WORDS[node.id.lower()], float):
            return ast.copy_location(ast.Constant(_WORDS[node.id.lower()]), node)
        return node


def parse_override_value(text: str) -> Any:
    """A ``--cfg-options`` value as a Python literal: ``'1'`` -> 1, ``'1e-3'`` -> 0.001, ``'[1,2]'`` -> [1, 2],
    ``"dict(a=1)"`` -> {'a': 1}, ``'None'``/``'null'`` -> None, ``'True'``/``'true'`` -> True, ``'nan'``,
    ``'inf'``, ``'-inf'`` -> floats; anything else stays a string (``'sgd'`` -> 'sgd')."""
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    try:
        tree = _NonFinite().visit(ast.parse(stripped, mode="eval"))
        return _literal(tree.body)
    except (ValueError, SyntaxError, TypeError):
        return text


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


NUMERIC_KEYS = frozenset({
    "seed", "task_weight", "optimizer.lr", "optimizer.momentum", "optimizer.weight_decay", "optimizer.dampening",
    "optimizer.eps", "lr_schedule.gamma", "lr_schedule.power", "lr_schedule.min_lr_ratio",
    "lr_schedule.warmup_iters", "lr_schedule.warmup_ratio", "train.epochs", "train.iters", "train.eval_interval",
    "train.log_interval", "train.checkpoint_interval", "train.grad_clip", "train.accumulate",
    "train.max_consecutive_skips", "data.batch_size", "data.val_batch_size", "data.num_workers", "data.prefetch_factor",
    "strategy.init_epochs", "strategy.init_lr", "strategy.weight",
})
"""Keys that take a number even where the config leaves them unset (``train.grad_clip=None``): a
``--cfg-options`` value for them (or for any key that currently holds a number) must parse as one."""


def apply_overrides(cfg: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """Apply ``a.b=1`` style overrides; list items are addressed by index (``distill.0.weight=2``). A value
    that is not a literal (a bare word) for a numeric key is an error, not a string."""
    source = "--cfg-options"
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--cfg-options expects key=value pairs; got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        value = parse_override_value(raw)
        parts = key.split(".")
        node: Any = cfg
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not _is_index(part) or not -len(node) <= int(part) < len(node):
                    raise ConfigError(f"--cfg-options {key}: {here!r} indexes a list of {len(node)} items")
                node = node[int(part)]
            elif isinstance(node, dict):
                if part not in node or not isinstance(node[part], (dict, list)):
                    if part in node:
                        raise ConfigError(f"--cfg-options {key}: {here!r} is {node[part]!r}, not a dict")
                    node[part] = {}
                node = node[part]
            else:
                raise ConfigError(f"--cfg-options {key}: {here!r} is not a dict or list")
        last = parts[-1]
        current = node[int(last)] if isinstance(node, list) and _is_index(last) and -len(node) <= int(last) < len(node) \
            else (node.get(last) if isinstance(node, dict) else None)
        if isinstance(value, str) and (_is_number(current) or key in NUMERIC_KEYS):
            raise ConfigError(f"--cfg-options {key}={raw.strip()}: {key} takes a number "
                              f"(now {current!r}), and {raw.strip()!r} is not one; write e.g. {key}=0.1, 1e-3, "
                              f"nan or inf")
        if isinstance(node, list):
            if not _is_index(last) or not -len(node) <= int(last) < len(node):
                raise ConfigError(f"--cfg-options {key}: index {last!r} out of range for a list of {len(node)}")
            node[int(last)] = value
        elif isinstance(value, dict) and isinstance(node.get(last), dict):
            merge_into(node[last], value, source, cfg.sources, key + ".")
        else:
            node[last] = value
        _drop_sources(key, cfg.sources)
        _record_sources(value, key, source, cfg.sources)
    return cfg


def load_config(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a config file, resolve its ``_base_`` chain, apply overrides."""
    path = Path(path).resolve()
    data, sources = _load_file(path, ())
    cfg = Config(_strip_delete(data), sources, filename=str(path))
    return apply_overrides(cfg, overrides)


def config_from_dict(data: dict, filename: str = "<dict>") -> Config:
    cfg = Config(copy.deepcopy(data), filename=filename)
    for k, v in data.items():
        _record_sources(v, k, filename, cfg.sources)
    return cfg


def config_name(filename: str) -> str:
    """``configs/cifar100/distill/x/kd.py`` -> ``cifar100/distill/x/kd``; outside ``configs/``: the stem."""
    path = Path(filename).resolve()
    if "configs" in path.parts:
        idx = len(path.parts) - 1 - path.parts[::-1].index("configs")
        return str(Path(*path.parts[idx + 1:]).with_suffix(""))
    return path.stem
