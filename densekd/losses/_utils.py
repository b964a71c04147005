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


def check_maps(s: torch.Tensor, t: torch.Tensor, who: str, what: str = "feature maps") -> None:
    """Both are B x C x H x W tensors of the same batch size, else a ValueError naming the loss ``who``."""
    for name, x in (("student", s), ("teacher", t)):
        if not torch.is_tensor(x) or x.dim() != 4:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{who}: expected {name} {what} of shape B x C x H x W, got {shape}; "
                             f"tap a 4-D (convolutional) tensor for this loss")
    if s.shape[0] != t.shape[0]:
        raise ValueError(f"{who}: student batch {tuple(s.shape)} and teacher batch {tuple(t.shape)} differ; "
                         f"feed the same images to both networks")
