"""Registries: map a short ``type`` name to a class or factory and build it from a dict.

``MODELS.build(dict(type='resnet20', num_classes=100))`` looks the name up,
checks the keyword arguments against the constructor's real signature and
calls it. Errors name what was asked for, what exists, and the closest match.

Registries import their home packages lazily on first look-up, so that a
module can register itself without import-order puzzles.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any, Callable, Iterable


class RegistryError(KeyError):
    """Unknown name or bad keyword for a registry build. ``str()`` is the full message."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return self.args[0] if self.args else ""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(word.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    hits = close_matches(word, candidates)
    return f" Did you mean {', '.join(repr(h) for h in hits)}?" if hits else ""


def signature_params(fn: Callable) -> tuple[list[str], bool]:
    """(names of keyword-passable parameters, whether it accepts **kwargs)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    if inspect.isclass(fn):
        # a class without its own __init__ (below object / torch's Module) takes no arguments, whatever *args
        # says; found by the class that defines __init__, since torch.compile's dynamo replaces Module.__init__
        owner = next(k for k in fn.__mro__ if "__init__" in vars(k))
        if owner is object or (owner.__name__ == "Module" and owner.__module__.startswith("torch.nn")):
            return [], False
    sig = inspect.signature(target)
    names, var_kw = [], False
    for i, p in enumerate(sig.parameters.values()):
        if inspect.isclass(fn) and i == 0 and p.name == "self":
            continue
        if p.kind == p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return names, var_kw


class Registry:
    """A name -> builder table.

    Args:
        name: what is registered (``'model'``, ``'loss'``...), used in messages.
        modules: packages imported on first look-up so their members register.
    """

    def __init__(self, name: str, modules: Iterable[str] = ()):
        self.name = name
        self._modules = list(modules)
        self._imported = False
        self._table: dict[str, Callable] = {}

    # -- registration -------------------------------------------------------
    def register(self, name: str | Callable | None = None, *, force: bool = False):
        """Decorator: ``@MODELS.register()`` or ``@MODELS.register('alias')``."""
        if callable(name):  # used bare: @REG.register
            return self.register()(name)

        def deco(obj: Callable) -> Callable:
            key = name or obj.__name__
            if key in self._table and self._table[key] is not obj and not force:
                raise RegistryError(f"{self.name} {key!r} is already registered by {self._table[key]!r}")
            self._table[key] = obj
            return obj

        return deco

    # -- look-up ------------------------------------------------------------
    def _ensure_imported(self) -> None:
        if not self._imported:
            self._imported = True
            for mod in self._modules:
                importlib.import_module(mod)

    def names(self) -> list[str]:
        self._ensure_imported()
        return sorted(self._table)

    def __contains__(self, key: str) -> bool:
        self._ensure_imported()
        return key in self._table

    def get(self, key: str) -> Callable:
        self._ensure_imported()
        if key not in self._table:
            raise RegistryError(
                f"Unknown {self.name} type {key!r}.{did_you_mean(key, self._table)} "
                f"Registered {self.name}s: {', '.join(sorted(self._table))}"
            )
        return self._table[key]

    def check_kwargs(self, key: str, kwargs: Iterable[str], where: str = "") -> None:
        """Raise if any keyword is not a parameter of ``key``'s constructor."""
        fn = self.get(key)
        params, var_kw = signature_params(fn)
        if var_kw:
            return
        for k in kwargs:
            if k not in params:
                loc = f" (in {where})" if where else ""
                raise RegistryError(
                    f"{self.name} {key!r} has no parameter {k!r}{loc}.{did_you_mean(k, params)} "
                    f"Its parameters: {', '.join(params) or '(none)'}"
                )

    def build(self, cfg: dict | Any, where: str = "", **defaults: Any) -> Any:
        """Build from ``dict(type=NAME, **kwargs)``; ``defaults`` fill unset kwargs.

        A default whose name the constructor does not accept is dropped, so a
        caller may offer context (``num_classes``) that some types ignore.
        """
        if not isinstance(cfg, dict):
            raise RegistryError(f"Cannot build a {self.name} from {cfg!r}: expected dict(type=..., ...)")
        if "type" not in cfg:
            raise RegistryError(f"{self.name} config {cfg!r} has no 'type' key{f' (in {where})' if where else ''}")
        kwargs = dict(cfg)
        key = kwargs.pop("type")
        fn = self.get(key) if isinstance(key, str) else key
        if isinstance(key, str):
            self.check_kwargs(key, kwargs, where)
        params, var_kw = signature_params(fn)
        for k, v in defaults.items():
            if k not in kwargs and (var_kw or k in params):
                kwargs[k] = v
        return fn(**kwargs)


MODELS = Registry("model", ["densekd.models"])
DATASETS = Registry("dataset", ["densekd.data"])
LOSSES = Registry("loss", ["densekd.losses"])
CONNECTORS = Registry("connector", ["densekd.nn.connectors"])
TASKS = Registry("task", ["densekd.tasks"])
STRATEGIES = Registry("strategy", ["densekd.strategies"])
SYNTHESIS_METHODS = Registry("synthesis method", ["densekd.synthesis.methods"])
