"""References to earlier stages inside option values: ``{NAME.best}``, ``{NAME.last}``, ``{NAME.work_dir}``,
``{NAME.data}``.

A reference is replaced by a path of stage ``NAME``'s work dir: ``best`` is its
``checkpoints/best.pth``, ``last`` its ``checkpoints/last.pth``, ``work_dir`` the
directory itself, ``data`` the images file of a synthesize stage (``images.h5``). References may sit anywhere in a string (``'{pre.work_dir}/feats.pt'``)
and anywhere in a nested value (lists, dicts).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Iterator

FIELDS = ("best", "last", "work_dir", "data")
DATA_FILE = "images.h5"  # what a synthesize stage writes (densekd.synthesis.runner.OUTPUT)
# {name.field}: the name is a stage name, the field any word (checked against FIELDS with a clear error)
REF = re.compile(r"\{([A-Za-z0-9_-]+)\.([A-Za-z_]+)\}")


def stage_path(stage_dir: Path, field: str) -> Path:
    if field == "best":
        return stage_dir / "checkpoints" / "best.pth"
    if field == "last":
        return stage_dir / "checkpoints" / "last.pth"
    if field == "work_dir":
        return stage_dir
    if field == "data":
        return stage_dir / DATA_FILE
    raise KeyError(field)


def strings(value: Any) -> Iterator[str]:
    """Every string inside a (nested) option value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def find(value: Any) -> list[tuple[str, str]]:
    """The ``(name, field)`` of every reference in ``value``, in order."""
    return [m.groups() for s in strings(value) for m in REF.finditer(s)]


def substitute(value: Any, resolve: Callable[[str, str], str]) -> Any:
    """``value`` with every reference replaced by ``resolve(name, field)``."""
    if isinstance(value, str):
        return REF.sub(lambda m: resolve(m.group(1), m.group(2)), value)
    if isinstance(value, dict):
        return {k: substitute(v, resolve) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolve) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, resolve) for v in value)
    return value
