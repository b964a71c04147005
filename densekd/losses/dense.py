"""Distillation losses for dense prediction (segmentation, depth): pixel-wise, pair-wise, channel-wise.

* :class:`PixelWiseKD` -- per-pixel KL between class distributions (Liu et al., "Structured Knowledge
  Distillation for Semantic Segmentation", CVPR 2019; TPAMI 2020 "Structured Knowledge Distillation for Dense
  Prediction").
* :class:`PairWiseKD` -- squared difference of node-affinity (cosine similarity) graphs (same papers).
* :class:`CWD` -- channel-wise distillation (Shu et al., "Channel-wise Knowledge Distillation for Dense
  Prediction", ICCV 2021).

The adversarial "holistic" term of the structured-KD papers lives in :mod:`densekd.losses.adversarial`.
All inputs are ``B x C x H x W`` tensors; every loss also accepts a list of tensors (one per tap) and then
returns the SUM of the per-tap losses.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densekd.nn.connectors import build_connector
from densekd.losses._utils import as_list, check_maps, check_same_length
from densekd.registry import LOSSES

__all__ = ["PixelWiseKD", "PairWiseKD", "CWD"]


# ----------------------------------------------------------------------------------------------- helpers
def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``B x C x H x W`` to ``size`` (align_corners=False); no-op when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _label_mask(target: torch.Tensor, size: Sequence[int], batch: int, ignore_index: int, who: str) -> torch.Tensor:
    """``B x H x W`` boolean mask of valid pixels at resolution ``size`` (nearest-neighbour resized labels)."""
    if not torch.is_tensor(target):
        raise ValueError(f"{who}: extra['target'] must be a B x H x W label map tensor, got {type(target).__name__}")
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.dim() != 3:
        raise ValueError(f"{who}: extra['target'] must be a B x H x W label map (ignore pixels = ignore_index), "
                         f"got shape {tuple(target.shape)}; pass the segmentation labels, or no target to use "
                         f"every pixel")
    if target.shape[0] != batch:
        raise ValueError(f"{who}: target batch {target.shape[0]} differs from the logits batch {batch}")
    if tuple(target.shape[-2:]) != tuple(size):
        # 'nearest' picks source index floor(dst * in / out): labels are never blended.
        target = F.interpolate(target[:, None].float(), size=tuple(size), mode="nearest")[:, 0]
        return target != float(ignore_index)
    return target != ignore_index


# ----------------------------------------------------------------------------------------------- pixel-wise
@LOSSES.register()
class PixelWiseKD(nn.Module):
    """Pixel-wise distillation (Liu et al., CVPR 2019 / TPAMI 2020, "Structured Knowledge Distillation").

    ``loss = T^2 * mean_{valid (b, h, w)} KL( softmax(t[b, :, h, w] / T) || softmax(s[b, :, h, w] / T) )``

    Shapes: student / teacher logits ``B x C x H x W`` (same ``C``). When the resolutions differ the student
    logits are bilinearly resized (align_corners=False) to the teacher's. ``extra['target']`` (``B x H' x W'``
    label map, optional) marks pixels equal to ``ignore_index`` as ignored; it is nearest-neighbour resized to
    the logits' resolution. Without a target every pixel counts. If no pixel is valid the loss is 0.

    Defaults: ``T=1.0`` (the reference uses no temperature), ``ignore_index=255``.

    Normalisation vs. the reference (irfanICMLL/structure_knowledge_distillation, ``CriterionPixelWise``):
    the reference computes the cross-entropy ``sum_{b,h,w,c} -p_t log p_s`` over ALL pixels (ignore pixels
    included) and divides by ``H*W`` only -- i.e. it is the per-image mean summed over the batch (``B`` times
    a per-pixel mean), and it uses CE instead of KL (they differ by the teacher entropy, which carries no
    gradient). Here we average the KL over VALID pixels of the whole batch, so the value does not scale with
    the batch size and ignore pixels (void regions) do not contribute. The reference recipe uses weight
    ``lambda_pi = 10`` with batch 8 per GPU; to reproduce its gradient scale use ``weight = 10 * B``
    (CIRKD's ``CriterionKD`` -- per-pixel ``batchmean`` KL, also over all pixels -- matches weight 10).
    """

    def __init__(self, T: float = 1.0, ignore_index: int = 255):
        super().__init__()
        if T <= 0:
            raise ValueError(f"PixelWiseKD: temperature T must be > 0, got {T}")
        self.T = float(T)
        self.ignore_index = int(ignore_index)

    def _one(self, s: torch.Tensor, t: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        check_maps(s, t, "PixelWiseKD", "logits")
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"PixelWiseKD: student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} "
                             f"have different class counts; tap the classifier outputs of both networks "
                             f"(same label space)")
        s = _resize(s, t.shape[-2:])
        log_ps = F.log_softmax(s.float() / self.T, dim=1)
        log_pt = F.log_softmax(t.detach().float() / self.T, dim=1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum(1)  # B x H x W
        if target is None:
            return kl.mean() * self.T ** 2
        valid = _label_mask(target, kl.shape[-2:], kl.shape[0], self.ignore_index, "PixelWiseKD")
        n_valid = valid.sum().clamp(min=1)
        return torch.where(valid, kl, torch.zeros_like(kl)).sum() / n_valid * self.T ** 2

    def forward(self, student, teacher, target: torch.Tensor | None = None, **extra) -> torch.Tensor:
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "PixelWiseKD")
        return sum(self._one(s, t, target) for s, t in zip(s_list, t_list))


# ----------------------------------------------------------------------------------------------- pair-wise
def _auto_rows(groups: int, cols: int, budget: int = 1 << 22) -> int:
    """Rows per chunk so that one ``groups x rows x cols`` similarity block holds about ``budget`` elements."""
    return max(1, budget // max(1, groups * cols))


def _row_chunks(n: int, rows: int):
    return ((i0, min(n, i0 + rows)) for i0 in range(0, n, rows))


def _diff_block(a: torch.Tensor, b: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    """Rows ``i0:i1`` of ``D = A^T A - B^T B`` for every group: ``G x (i1 - i0) x N``."""
    tb = torch.bmm(b[:, :, i0:i1].transpose(1, 2), b)
    return torch.baddbmm(tb, a[:, :, i0:i1].transpose(1, 2), a, beta=-1.0, alpha=1.0)


class _ChunkedSimilarityMSE(torch.autograd.Function):
    """``sum_{g,i,j} (A_g^T A_g - B_g^T B_g)_{ij}^2 / (G N^2)`` computed in row chunks.

    ``A``: ``G x Ca x N``, ``B``: ``G x Cb x N``. Forward and backward only ever hold ``G x rows x N``
    blocks of the ``N x N`` matrices (plus the inputs and their gradients), so memory is
    ``O(G * rows * N + (Ca + Cb) * G * N)`` instead of ``O(G * N^2)``. The backward uses the closed form
    ``dL/dA = 4/M * A D`` (``D`` symmetric, ``M = G N^2``), recomputing ``D`` chunk by chunk. ``B`` (the
    teacher's nodes) gets no gradient: the loss always detaches the teacher.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, rows: int) -> torch.Tensor:
        g, _, n = a.shape
        # per-block sums use torch's cascaded summation (accurate to ~1e-8 relative); torch.dot would not be
        partial = [_diff_block(a, b, i0, i1).square_().sum() for i0, i1 in _row_chunks(n, rows)]
        ctx.save_for_backward(a, b)
        ctx.rows = rows
        return torch.stack(partial).sum() / (g * n * n)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        with torch.autocast(device_type=grad_out.device.type, enabled=False):
            return _ChunkedSimilarityMSE._backward(ctx, grad_out.float())

    @staticmethod
    def _backward(ctx, grad_out: torch.Tensor):
        a, b = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        g, _, n = a.shape
        ga = torch.zeros_like(a)
        for i0, i1 in _row_chunks(n, ctx.rows):
            d = _diff_block(a, b, i0, i1)  # G x rows x N: rows i0:i1 of D
            ga.baddbmm_(a[:, :, i0:i1], d)  # += A[:, rows] @ D[rows, :]
        return ga.mul_(grad_out * (4.0 / (g * n * n))), None, None


@LOSSES.register()
class PairWiseKD(nn.Module):
    """Pair-wise (structured) distillation (Liu et al., CVPR 2019 / TPAMI 2020).

    Each feature map (``B x C x H x W``; student and teacher may differ in channels, not in the node grid) is
    pooled into nodes, every node vector is L2-normalised along channels, ``n = f / (||f||_2 + eps)``, and the
    node-affinity matrices ``S = n^T n`` (``N x N`` cosine similarities) are matched:

    ``loss = mean_{b, i, j} (S_s[b, i, j] - S_t[b, i, j])^2 = sum / (B * N^2)``

    which is exactly the reference normalisation (``sim_dis_compute``: squared error summed, divided by
    ``N^2`` (N = pooled h*w) and by ``B``; the diagonal pairs are included). With ``cross_image=True`` the
    nodes of all images form one graph of ``B*N`` nodes and the loss is the mean over its ``(B*N)^2`` pairs.

    Pooling: ``grid=(h, w)`` -> adaptive max/avg pooling to exactly ``h x w`` nodes (works for any input
    size, also when student and teacher resolutions differ). Otherwise the reference rule: kernel = stride =
    ``(int(H*scale), int(W*scale))`` computed from the TEACHER's size, ``ceil_mode=True``, no padding
    (``scale=0.5`` -> a 2 x 2 node grid, the reference default ``--pool-scale 0.5``). ``scale=None`` and no
    grid -> every pixel is a node. CIRKD's variant pools with a fixed 2x2 window: ``grid=(H//2, W//2)``.

    Reference details kept: max pooling (``pool='max'``), features cast to fp32, ``eps=1e-8`` added to the
    norm and the norm DETACHED (``detach_norm=True``: ``similarity()`` divides by ``L2(feat).detach()``; the
    paper's equation differentiates through it -- set ``detach_norm=False`` for that). Reference recipe weight
    ``lambda_pa = 0.5`` (run_train_val.sh), tapped on the last backbone feature map.

    Memory: the similarity matrices are never materialised; they are computed ``chunk_size`` rows at a time
    in a custom autograd function (forward and backward), so memory is ``O(chunk_size * N)`` per image.
    ``chunk_size=None`` picks rows so that one block has about 4M elements (16 MB in fp32). Measured on CPU
    for a 64 x 128-node graph (8192 nodes, batch 1), forward + backward: ~60 MB peak with 16 channels, ~105 MB
    with 256 channels, versus ~515 MB for a single unchunked block (one dense 8192 x 8192 fp32 matrix is
    256 MiB, and the plain-autograd version keeps several).

    Defaults: ``pool='max'``, ``grid=None``, ``scale=0.5``, ``cross_image=False``, ``chunk_size=None``,
    ``detach_norm=True``, ``eps=1e-8``.
    """

    def __init__(self, pool: str = "max", grid: Sequence[int] | int | None = None, scale: float | None = 0.5,
                 cross_image: bool = False, chunk_size: int | None = None, detach_norm: bool = True,
                 eps: float = 1e-8):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"PairWiseKD: pool must be 'avg' or 'max', got {pool!r}")
        if grid is not None:
            grid = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(g) for g in grid)
            if len(grid) != 2 or min(grid) < 1:
                raise ValueError(f"PairWiseKD: grid must be (h, w) with positive entries, got {grid!r}")
        if scale is not None and not (0 < scale <= 1):
            raise ValueError(f"PairWiseKD: scale must be in (0, 1] (kernel = int(H*scale)), got {scale}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"PairWiseKD: chunk_size must be a positive number of rows or None, got {chunk_size}")
        self.pool = pool
        self.grid = grid
        self.scale = scale
        self.cross_image = bool(cross_image)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.detach_norm = bool(detach_norm)
        self.eps = float(eps)

    # -- nodes ---------------------------------------------------------------------------------------
    def _pool(self, f: torch.Tensor, ref_hw: Sequence[int]) -> torch.Tensor:
        if self.grid is not None:
            fn = F.adaptive_max_pool2d if self.pool == "max" else F.adaptive_avg_pool2d
            return fn(f, self.grid)
        if self.scale is None:
            return f
        kh, kw = max(1, int(ref_hw[0] * self.scale)), max(1, int(ref_hw[1] * self.scale))
        if self.pool == "max":
            return F.max_pool2d(f, (kh, kw), stride=(kh, kw), padding=0, ceil_mode=True)
        return F.avg_pool2d(f, (kh, kw), stride=(kh, kw), padding=0, ceil_mode=True, count_include_pad=False)

    def nodes(self, f: torch.Tensor, ref_hw: Sequence[int]) -> torch.Tensor:
        """Pooled, channel-L2-normalised node features ``B x C x N`` (fp32)."""
        f = self._pool(f.float(), ref_hw)
        norm = f.pow(2).sum(1, keepdim=True).sqrt() + self.eps
        if self.detach_norm:
            norm = norm.detach()
        return (f / norm).flatten(2)

    def _one(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_maps(s, t, "PairWiseKD")
        if self.grid is None and self.scale is not None and s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"PairWiseKD: student {tuple(s.shape)} and teacher {tuple(t.shape)} feature maps "
                             f"have different spatial sizes, so scale-based pooling gives different node grids; "
                             f"pass grid=(h, w) to pool both to the same number of nodes")
        if self.grid is None and self.scale is None and s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"PairWiseKD: student {tuple(s.shape)} and teacher {tuple(t.shape)} feature maps "
                             f"differ in spatial size; pass grid=(h, w) (or scale) to pool both to one grid")
        ref = t.shape[-2:]
        # fp32 throughout (as the reference's feat.float()): under fp16 autocast the N^2 sums would overflow
        with torch.autocast(device_type=s.device.type, enabled=False):
            ns, nt = self.nodes(s, ref), self.nodes(t.detach(), ref)
            if self.cross_image:  # one graph over all B*N nodes
                ns = ns.transpose(0, 1).reshape(1, ns.shape[1], -1)
                nt = nt.transpose(0, 1).reshape(1, nt.shape[1], -1)
            groups, n = ns.shape[0], ns.shape[2]
            rows = self.chunk_size if self.chunk_size is not None else _auto_rows(groups, n)
            return _ChunkedSimilarityMSE.apply(ns.contiguous(), nt.contiguous(), min(rows, n))

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "PairWiseKD")
        return sum(self._one(s, t) for s, t in zip(s_list, t_list))


# ----------------------------------------------------------------------------------------------- channel-wise
@LOSSES.register()
class CWD(nn.Module):
    """Channel-wise distillation (Shu et al., "Channel-wise Knowledge Distillation for Dense Prediction",
    ICCV 2021).

    Each channel of a ``B x C x H x W`` map is turned into a distribution over the ``H*W`` positions,
    ``phi(y)_c = softmax(y_c / T)`` (softmax over space), and

    ``loss = T^2 / (B * C) * sum_{b, c} sum_{hw} phi(t)_{b,c,hw} * (log phi(t)_{b,c,hw} - log phi(s)_{b,c,hw})``

    i.e. KL(teacher || student) summed over positions, averaged over channels and images -- the paper's /
    MMRazor ``ChannelWiseDivergence`` / CIRKD ``CriterionCWD(norm_type='channel', divergence='kl')``
    normalisation (``sum / (N*C) * T^2``).

    Shapes: student ``B x Cs x Hs x Ws``, teacher ``B x Ct x H x W``. When channels differ, a 1x1
    conv + BN connector (:class:`~densekd.nn.connectors.ConvConnector`, a learnable part of this loss)
    maps the student to ``Ct`` channels; it is built from ``s_shapes``/``t_shapes`` (the distiller passes
    them). CIRKD's connector is a bias-free 1x1 conv without BN. When resolutions differ the (connected)
    student map is bilinearly resized to the teacher's. Several taps -> sum of per-tap losses.

    Defaults: ``T=4.0`` (CIRKD's setting for segmentation logits / features; MMRazor's Cityscapes logits
    config uses ``tau=1, loss_weight=5``).
    """

    def __init__(self, T: float = 4.0, s_shapes: Sequence[torch.Size] | None = None,
                 t_shapes: Sequence[torch.Size] | None = None):
        super().__init__()
        if T <= 0:
            raise ValueError(f"CWD: temperature T must be > 0, got {T}")
        self.T = float(T)
        self.connectors = nn.ModuleList()
        if s_shapes is not None and t_shapes is not None:
            s_shapes, t_shapes = list(s_shapes), list(t_shapes)
            check_same_length(s_shapes, t_shapes, "CWD")
            for ss, ts in zip(s_shapes, t_shapes):
                if len(ss) != 4 or len(ts) != 4:
                    raise ValueError(f"CWD: needs 4-D B x C x H x W taps, got student {tuple(ss)} and teacher "
                                     f"{tuple(ts)}")
                self.connectors.append(build_connector("conv", ss, ts) if ss[1] != ts[1] else nn.Identity())

    def _one(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        check_maps(s, t, "CWD")
        if i < len(self.connectors):
            s = self.connectors[i](s)
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"CWD: student {tuple(s.shape)} and teacher {tuple(t.shape)} have different channel "
                             f"counts and no connector was built for tap {i}; construct CWD with "
                             f"s_shapes/t_shapes (the distiller passes them) so a 1x1 conv connector is created")
        s = _resize(s, t.shape[-2:])
        b, c = t.shape[:2]
        log_ps = F.log_softmax(s.float().flatten(2) / self.T, dim=2)
        log_pt = F.log_softmax(t.detach().float().flatten(2) / self.T, dim=2)
        return (log_pt.exp() * (log_pt - log_ps)).sum() * (self.T ** 2) / (b * c)

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "CWD")
        return sum(self._one(i, s, t) for i, (s, t) in enumerate(zip(s_list, t_list)))
