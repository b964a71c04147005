"""Helpers shared by the loss modules: tap lists, shape lists, single-tensor unwrapping, map checks.

Every loss takes ``student`` / ``teacher`` as one tensor or a list of tensors (one per tap) and may be built
from ``s_shapes`` / ``t_shapes`` (the tapped shapes of a probe forward). These functions are the one place
where such inputs are normalised and checked, so that every loss words its errors the same way.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def as_list(x: Any) -> list:
    """A tensor becomes a one-item list; lists/tuples pass through."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def check_same_length(student: Sequence, teacher: Sequence, name: str) -> None:
    if len(student) != len(teacher):
        raise ValueError(f"{name}: got {len(student)} student taps but {len(teacher)} teacher taps; "
                         f"list the same number of layers for both")


def shapes_of(x: Any) -> list[torch.Size]:
    return [t.shape for t in as_list(x)]


def shape_list(shapes: Any) -> list[torch.Size] | None:
    """``s_shapes`` / ``t_shapes`` as a list of ``torch.Size``: a bare size (or tuple of ints) is one shape,
    a list of sizes passes through, ``None`` stays ``None``."""
    if shapes is None:
        return None
    if isinstance(shapes, torch.Size) or (isinstance(shapes, (list, tuple)) and len(shapes) > 0
                                          and all(isinstance(d, int) for d in shapes)):
        return [torch.Size(shapes)]
    return [torch.Size(s) for s in shapes]


def require_shapes(shapes: Any, which: str, name: str, dims: int | None = 4) -> list[torch.Size]:
    """Like :func:`shape_list` for a loss that builds learnable parts from the shapes: ``None`` or an empty
    list is an error, and with ``dims`` every shape must have that many dimensions."""
    if shapes is None:
        raise ValueError(f"{name} builds learnable parts from the tapped shapes and needs {which} (a list of "
                         f"batched torch.Size, one per tap); the distiller passes it from a probe forward, "
                         f"when building by hand pass e.g. {which}=[f.shape for f in feats]")
    out = shape_list(shapes)
    if not out:
        raise ValueError(f"{name}: {which} is empty; tap at least one layer")
    for s in out:
        if dims is not None and len(s) != dims:
            raise ValueError(f"{name} works on {dims}-D (B x C x H x W) feature maps, but {which} contains "
                             f"{tuple(s)}; tap convolutional feature maps (e.g. 'feats[1:-1]'), not vectors")
    return out


def require_shape_pair(s_shapes: Any, t_shapes: Any, name: str, dims: int | None = 4
                       ) -> tuple[list[torch.Size], list[torch.Size]]:
    """Student and teacher shape lists of equal length (see :func:`require_shapes`)."""
    s = require_shapes(s_shapes, "s_shapes", name, dims)
    t = require_shapes(t_shapes, "t_shapes", name, dims)
    if len(s) != len(t):
        raise ValueError(f"{name}: got {len(s)} student shapes but {len(t)} teacher shapes; list the same "
                         f"number of layers for student and teacher")
    return s, t


def single_tensor(x: Any, name: str, role: str, what: str = "tensor",
                  hint: str = "tap the logits once (e.g. student='output')") -> torch.Tensor:
    """Unwrap a one-item tap list; several taps or a non-tensor are errors naming the loss ``name``."""
    items = as_list(x)
    if len(items) != 1:
        raise ValueError(f"{name}: expected ONE {role} {what} but got {len(items)} taps; {hint}")
    t = items[0]
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: {role} must be a torch.Tensor, got {type(t).__name__}")
    return t


def tap_lists(student: Any, teacher: Any, name: str, dims: int | None = None, expected: int | None = None,
              min_layers: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Student and (detached) teacher tap lists, checked: equal counts, ``expected`` taps when the loss was
    built for that many, at least ``min_layers``, tensors with a batch dimension (exactly ``dims`` dimensions
    when given, e.g. 4 for feature maps) and equal batch sizes."""
    s_list, t_list = as_list(student), as_list(teacher)
    check_same_length(s_list, t_list, name)
    if expected is not None and len(s_list) != expected:
        raise ValueError(f"{name} was built for {expected} layer(s) (from s_shapes/t_shapes) but got "
                         f"{len(s_list)}; tap the same layers as in the probe forward that built it")
    if not s_list:
        raise ValueError(f"{name}: got no feature taps; tap at least one layer")
    if len(s_list) < min_layers:
        raise ValueError(f"{name} needs at least {min_layers} tapped layers, got {len(s_list)}")
    for i, (s, t) in enumerate(zip(s_list, t_list)):
        for role, x in (("student", s), ("teacher", t)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name}: {role} tap {i} must be a torch.Tensor, got {type(x).__name__}")
        if dims is not None and (s.dim() != dims or t.dim() != dims):
            raise ValueError(f"{name} works on {dims}-D (B x C x H x W) feature maps; layer {i} has student "
                             f"{tuple(s.shape)} and teacher {tuple(t.shape)}; tap convolutional feature maps")
        for role, x in (("student", s), ("teacher", t)):
            if x.dim() < 2:
                raise ValueError(f"{name}: {role} tap {i} has shape {tuple(x.shape)}; expected a batched "
                                 f"feature B x D or B x C x H x W")
        if s.shape[0] != t.shape[0]:
            raise ValueError(f"{name}: tap {i} batch sizes differ: student {tuple(s.shape)} vs teacher "
                             f"{tuple(t.shape)}; both networks must see the same batch")
    return s_list, [t.detach() for t in t_list]


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


def pool_to_common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the larger map to the smaller spatial size (RepDistiller's rule, per axis)."""
    if a.shape[2:] == b.shape[2:]:
        return a, b
    size = (min(a.shape[2], b.shape[2]), min(a.shape[3], b.shape[3]))
    if tuple(a.shape[2:]) != size:
        a = F.adaptive_avg_pool2d(a, size)
    if tuple(b.shape[2:]) != size:
        b = F.adaptive_avg_pool2d(b, size)
    return a, b


def check_channels(name: str, i: int, got: torch.Tensor, built: int, who: str) -> None:
    """Tap ``i`` of ``who`` has the channel count the loss was built for."""
    if got.shape[1] != built:
        raise ValueError(f"{name}: layer {i} {who} has {got.shape[1]} channels but the loss was built for "
                         f"{built} (from {'s' if who == 'student' else 't'}_shapes); tap the same layers as "
                         f"in the probe forward")


def parameters_of(modules) -> list[nn.Parameter]:
    """Every parameter of ``modules``, in order."""
    return [p for m in modules for p in m.parameters()]


def standardize_logits(z: torch.Tensor, dim: int = 1, eps: float = 1e-7) -> torch.Tensor:
    """Z-score of logits along the class dimension ``dim`` (Sun et al., CVPR 2024, "Logit Standardization in
    Knowledge Distillation"): ``(z - mean(z)) / (std(z) + eps)`` with the unbiased (``C - 1``) standard
    deviation and ``eps`` added to it, as the authors' release (``normalize`` in their mdistiller fork:
    ``logit.std()`` is PyTorch's unbiased default, ``1e-7 + stdv``). ``dim=1`` serves both ``B x C`` logits
    and dense ``B x C x H x W`` logits (one z-score per pixel, over the channels). Computed in the input's
    dtype; the losses that use it cast to fp32 first where they compute in fp32."""
    if z.shape[dim] < 2:
        raise ValueError(f"logit standardisation needs at least 2 classes along dim {dim}; got shape "
                         f"{tuple(z.shape)}")
    mean = z.mean(dim=dim, keepdim=True)
    std = z.std(dim=dim, keepdim=True)
    return (z - mean) / (std + eps)


def epoch_warmup(epoch: float | None, warmup: float) -> float:
    """mdistiller's linear warm-up factor ``min(epoch / warmup, 1)`` with its epoch counter, which starts at 1
    and is constant over an epoch: ``min((floor(epoch) + 1) / warmup, 1)`` for densekd's fractional epoch
    counted from 0 (the first step has ``1 / warmup``). ``epoch=None`` (no trainer) or ``warmup=0``: 1."""
    if epoch is None or warmup == 0:
        return 1.0
    return min((math.floor(max(float(epoch), 0.0)) + 1.0) / float(warmup), 1.0)


def distributed_world() -> int:
    """World size when a process group is up, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def all_gather_rows(x: torch.Tensor, return_sizes: bool = False):
    """Concatenate ``x`` (``n_r x ...``, ``n_r`` may differ per rank) from every rank along dim 0, in rank order
    (no gradient). With ``return_sizes`` also the list of every rank's ``n_r``."""
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    most = max(sizes_i)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    out = torch.cat([p[:s] for p, s in zip(parts, sizes_i)], dim=0)
    return (out, sizes_i) if return_sizes else out


class _SymmetricGram(torch.autograd.Function):
    """``f f^T`` with the symmetric backward ``(g + g^T) f``: one product instead of autograd's two."""

    @staticmethod
    def forward(ctx, f: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(f)
        return f @ f.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (f,) = ctx.saved_tensors
        return (grad + grad.transpose(-1, -2)) @ f


def gram(f: torch.Tensor) -> torch.Tensor:
    """The Gram matrix ``f f^T`` of ``B x D`` rows (``... x B x D`` batched), whose backward takes one product
    of ``B x B x D`` where autograd through ``f @ f.t()`` takes two (one per operand)."""
    return _SymmetricGram.apply(f) if f.requires_grad else f @ f.transpose(-1, -2)
