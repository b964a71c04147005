"""Feature taps: record intermediate tensors of an unmodified model with forward hooks.

A tap is addressed by module path, as in ``model.named_modules()``:

* ``'layer3'``                 the output of ``model.layer3``
* ``'layer3.-1.act:input'``    the first input of the last block's ``act`` (pre-activation)
* ``'output'``                 the model's own return value (logits; the ``'out'`` entry of a dict output)
* ``'output.depth'``           entry ``'depth'`` of a dict output (multi-task models, ``output.aux``)
* ``'feats[1:-1]'``            a slice of the model's ``feature_taps['feats']`` list, the
                               RepDistiller feature list (``preacts[...]`` for pre-ReLU)

Integer path segments index ``nn.Sequential``/``nn.ModuleList`` children and may be
negative. A path that does not exist fails with the closest valid names.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import torch
from torch import nn

from densekd.registry import close_matches

OUTPUT = "output"
INPUT_SUFFIX = ":input"
def is_output_tap(path: str) -> bool:
    """``'output'`` or ``'output.<key>'``: read from the model's return value, not by a hook."""
    return path == OUTPUT or path.startswith(OUTPUT + ".")


_GROUP = re.compile(r"^(\w+)\[(-?\d*)(?::(-?\d*))?\]$")


class TapError(LookupError):
    def __str__(self) -> str:
        return self.args[0] if self.args else ""


def module_paths(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """The submodule at ``path`` (negative integer segments allowed)."""
    node = model
    walked = []
    for part in path.split("."):
        children = dict(node.named_children())
        if part.lstrip("-").isdigit() and part not in children and isinstance(node, (nn.Sequential, nn.ModuleList)):
            idx = int(part)
            if not -len(node) <= idx < len(node):
                raise TapError(f"Tap {path!r}: index {idx} out of range for {'.'.join(walked) or 'model'} "
                               f"({len(node)} children)")
            node = node[idx]
        elif part in children:
            node = children[part]
        else:
            valid = module_paths(model)
            prefix = ".".join(walked + [part])
            hits = close_matches(path, valid, n=5) or close_matches(prefix, valid, n=5)
            hint = f" Closest valid paths: {', '.join(hits)}." if hits else ""
            raise TapError(f"Tap {path!r}: {type(model).__name__} has no module {prefix!r}.{hint} "
                           f"Run `python tools/list_taps.py CONFIG` to see every path with its shape.")
        walked.append(part)
    return node


def expand_taps(model: nn.Module, spec: str | Iterable[str] | None) -> list[str]:
    """Expand group references (``feats[1:-1]``) into plain tap paths.

    ``spec`` may be one string or a list; ``None`` means the model output.
    """
    if spec is None:
        return [OUTPUT]
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    groups = getattr(model, "feature_taps", {}) or {}
    for item in items:
        m = _GROUP.match(item)
        if m and m.group(1) in groups:
            seq = list(groups[m.group(1)])
            start = int(m.group(2)) if m.group(2) not in (None, "") else None
            if m.group(3) is None and m.group(2) not in (None, ""):
                out.append(seq[start])  # single index: feats[-1]
            else:
                stop = int(m.group(3)) if m.group(3) not in (None, "") else None
                out.extend(seq[start:stop])
        elif m:
            raise TapError(f"Tap group {m.group(1)!r} is not defined by {type(model).__name__}; "
                           f"it defines: {', '.join(groups) or '(none)'}")
        else:
            out.append(item)
    return out


class FeatureTaps:
    """Record the tensors at ``paths`` on every forward of ``model``.

    Use as a context manager or call :meth:`remove`. After a forward,
    ``taps.features`` maps path -> tensor; :meth:`collect` returns them in a
    given order (``'output'`` must be supplied by the caller).
    """

    def __init__(self, model: nn.Module, paths: Iterable[str]):
        self.model = model
        self.paths = [p for p in dict.fromkeys(paths) if not is_output_tap(p)]
        self.features: dict[str, Any] = {}
        self._handles = []
        for path in self.paths:
            is_input = path.endswith(INPUT_SUFFIX)
            module = resolve_module(model, path[: -len(INPUT_SUFFIX)] if is_input else path)
            if is_input:
                self._handles.append(module.register_forward_pre_hook(self._pre_hook(path)))
            else:
                self._handles.append(module.register_forward_hook(self._hook(path)))

    def _hook(self, path: str):
        def hook(_module, _inputs, output):
            self.features[path] = output

        return hook

    def _pre_hook(self, path: str):
        def hook(_module, inputs):
            self.features[path] = inputs[0]

        return hook

    def clear(self) -> None:
        self.features = {}

    def collect(self, paths: Iterable[str], output: Any = None) -> list[Any]:
        """The recorded tensors at ``paths``; ``output`` is the model's raw return value (for ``'output'`` and
        ``'output.KEY'`` taps)."""
        out = []
        for p in paths:
            if p == OUTPUT:
                out.append(output["out"] if isinstance(output, dict) and "out" in output else output)
            elif p.startswith(OUTPUT + "."):
                key = p[len(OUTPUT) + 1:]
                if not isinstance(output, dict) or key not in output:
                    have = sorted(output) if isinstance(output, dict) else f"a {type(output).__name__}, not a dict"
                    raise TapError(f"Tap {p!r}: {type(self.model).__name__} returned {have} in this mode; tap "
                                   f"one of its entries as 'output.<key>' or the whole output as 'output'")
                out.append(output[key])
            elif p not in self.features:
                raise TapError(f"Tap {p!r} recorded nothing during the forward pass: the module at that "
                               f"path is not called by {type(self.model).__name__}.forward")
            else:
                out.append(self.features[p])
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self) -> "FeatureTaps":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def describe(output: Any) -> str:
    """Shape string for a tensor, tuple or dict (used by list_taps)."""
    if isinstance(output, torch.Tensor):
        return "x".join(str(s) for s in output.shape)
    if isinstance(output, (list, tuple)):
        return "(" + ", ".join(describe(o) for o in output) + ")"
    if isinstance(output, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in output.items()) + "}"
    return type(output).__name__


def trace_shapes(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, str, str]]:
    """(path, module type, output shape) for every module called in one forward."""
    rows: dict[str, tuple[str, str, str]] = {}
    handles = []
    for name, module in model.named_modules():
        if not name:
            continue

        def hook(mod, _inp, out, name=name):
            rows.setdefault(name, (name, type(mod).__name__, describe(out)))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(inputs)
    finally:
        for h in handles:
            h.remove()
    order = {n: i for i, n in enumerate(module_paths(model))}
    result = sorted(rows.values(), key=lambda r: order.get(r[0], 1 << 30))
    result.append((OUTPUT, type(model).__name__, describe(out)))
    return result
