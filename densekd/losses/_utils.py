"""Helpers shared by the loss modules."""
from __future__ import annotations

from typing import Any, Sequence

import torch


def as_list(x: Any) -> list:
    """A tensor becomes a one-item list; lists/tuples pass through."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def check_same_length(student: Sequence, teacher: Sequence, name: str) -> None:
    if len(student) != len(teacher):
        raise ValueError(f"{name}: got {len(student)} student taps but {len(teacher)} teacher taps; "
                         f"list the same number of layers for both")


def shapes_of(x: Any) -> list[torch.Size]:
    return [t.shape for t in as_list(x)]
