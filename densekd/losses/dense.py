"""Distillation losses for dense prediction (segmentation, depth): pixel-wise, pair-wise, channel-wise,
relational (DIST) and intra-class feature variation (IFVD).

* :class:`PixelWiseKD` -- per-pixel KL between class distributions (Liu et al., "Structured Knowledge
  Distillation for Semantic Segmentation", CVPR 2019; TPAMI 2020 "Structured Knowledge Distillation for Dense
  Prediction").
* :class:`PairWiseKD` -- squared difference of node-affinity (cosine similarity) graphs (same papers).
* :class:`CWD` -- channel-wise distillation (Shu et al., "Channel-wise Knowledge Distillation for Dense
  Prediction", ICCV 2021).
* :class:`DenseDIST` -- DIST's inter-/intra-class Pearson relations with pixels as instances (Huang et al.,
  "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022).
* :class:`IFVD` -- intra-class feature variation (Wang et al., "Intra-class Feature Variation Distillation for
  Semantic Segmentation", ECCV 2020).

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
from densekd.losses._utils import as_list, check_maps, check_same_length, standardize_logits
from densekd.losses.logits import dist_relations
from densekd.registry import LOSSES

__all__ = ["PixelWiseKD", "PairWiseKD", "CWD", "DenseDIST", "IFVD"]


# ----------------------------------------------------------------------------------------------- helpers
def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``B x C x H x W`` to ``size`` (align_corners=False); no-op when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _labels_at(target: torch.Tensor, size: Sequence[int], batch: int, who: str) -> torch.Tensor:
    """The ``B x H x W`` label map at resolution ``size`` (nearest-neighbour resized, long)."""
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
    return target.long()


def _label_mask(target: torch.Tensor, size: Sequence[int], batch: int, ignore_index: int, who: str) -> torch.Tensor:
    """``B x H x W`` boolean mask of valid pixels at resolution ``size`` (nearest-neighbour resized labels)."""
    return _labels_at(target, size, batch, who) != ignore_index


# ----------------------------------------------------------------------------------------------- pixel-wise
@LOSSES.register()
class PixelWiseKD(nn.Module):
    """Pixel-wise distillation (Liu et al., CVPR 2019 / TPAMI 2020, "Structured Knowledge Distillation").

    ``loss = T^2 * mean_{valid (b, h, w)} KL( softmax(t[b, :, h, w] / T) || softmax(s[b, :, h, w] / T) )``

    Shapes: student / teacher logits ``B x C x H x W`` (same ``C``). When the resolutions differ the student
    logits are bilinearly resized (align_corners=False) to the teacher's. ``extra['target']`` (``B x H' x W'``
    label map, optional) marks pixels equal to ``ignore_index`` as ignored; it is nearest-neighbour resized to
    the logits' resolution. Without a target every pixel counts. If no pixel is valid the loss is 0.

    ``logit_std=True`` z-scores each pixel's logits over the classes before the temperature (Sun et al., CVPR
    2024, :func:`~densekd.losses._utils.standardize_logits`; the paper is about classification, the per-pixel
    form is our extension), after the student is resized to the teacher's resolution.

    Defaults: ``T=1.0`` (the reference uses no temperature), ``ignore_index=255``, ``logit_std=False``.

    Normalisation vs. the reference (irfanICMLL/structure_knowledge_distillation, ``CriterionPixelWise``):
    the reference computes the cross-entropy ``sum_{b,h,w,c} -p_t log p_s`` over ALL pixels (ignore pixels
    included) and divides by ``H*W`` only -- i.e. it is the per-image mean summed over the batch (``B`` times
    a per-pixel mean), and it uses CE instead of KL (they differ by the teacher entropy, which carries no
    gradient). Here we average the KL over VALID pixels of the whole batch, so the value does not scale with
    the batch size and ignore pixels (void regions) do not contribute. The reference recipe uses weight
    ``lambda_pi = 10`` with batch 8 per GPU; to reproduce its gradient scale use ``weight = 10 * B``
    (CIRKD's ``CriterionKD`` -- per-pixel ``batchmean`` KL, also over all pixels -- matches weight 10).
    """

    def __init__(self, T: float = 1.0, ignore_index: int = 255, logit_std: bool = False):
        super().__init__()
        if T <= 0:
            raise ValueError(f"PixelWiseKD: temperature T must be > 0, got {T}")
        self.T = float(T)
        self.ignore_index = int(ignore_index)
        self.logit_std = bool(logit_std)

    def _one(self, s: torch.Tensor, t: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        check_maps(s, t, "PixelWiseKD", "logits")
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"PixelWiseKD: student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} "
                             f"have different class counts; tap the classifier outputs of both networks "
                             f"(same label space)")
        s, t = _resize(s, t.shape[-2:]).float(), t.detach().float()
        if self.logit_std:
            s, t = standardize_logits(s), standardize_logits(t)
        log_ps = F.log_softmax(s / self.T, dim=1)
        log_pt = F.log_softmax(t / self.T, dim=1)
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
        # per-block sums use torch's cascaded summation (accurate to ~1e-8 relative); torch.dot would not be.
        # They are added into one scalar at once: a list of small live tensors between the freed blocks would
        # split the allocator's free space (on the CPU the process then grows by a block per chunk)
        total = None
        for i0, i1 in _row_chunks(n, rows):
            block = _diff_block(a, b, i0, i1).square_().sum()
            total = block if total is None else total.add_(block)
            del block
        ctx.save_for_backward(a, b)
        ctx.rows = rows
        return total / (g * n * n)

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


def _gram_similarity_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same ``sum_{g,i,j} (A_g^T A_g - B_g^T B_g)_{ij}^2 / (G N^2)`` through channel Gram matrices:

    ``||A^T A - B^T B||_F^2 = ||A A^T||_F^2 - 2 ||A B^T||_F^2 + ||B B^T||_F^2``

    (``<A^T A, B^T B> = tr(A^T A B^T B) = ||A B^T||_F^2``), so the ``N x N`` similarities are never formed: the
    cost is ``O(N (Ca + Cb)^2)`` instead of ``O(N^2 (Ca + Cb))``, the memory ``O((Ca + Cb)^2)``. The three terms
    are large and nearly cancel once student and teacher agree, so they are computed in float64 (about 1e-12
    relative; float32 would leave ~1e-3 of a small loss); autograd gives the gradient ``4 (A A^T A - A B^T B) / M``.
    ``B`` (the teacher's nodes) gets no gradient."""
    g, _, n = a.shape
    with torch.autocast(device_type=a.device.type, enabled=False):
        a64, b64 = a.double(), b.detach().double()
        aa = torch.bmm(a64, a64.transpose(1, 2)).square().sum()
        ab = torch.bmm(a64, b64.transpose(1, 2)).square().sum()
        bb = torch.bmm(b64, b64.transpose(1, 2)).square().sum()
        return ((aa - 2.0 * ab + bb) / (g * n * n)).to(a.dtype)


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
    grid -> every pixel is a node. CIRKD's variant (``CriterionStructuralKD``) pools with a fixed 2x2 max window
    and normalises with ``F.normalize`` (the norm NOT detached): ``grid=(H//2, W//2), detach_norm=False``, as
    configs/cityscapes/cirkd/deeplabv3_r18_skd.py sets (its ``F.normalize`` divides by ``max(norm, 1e-12)``
    instead of ``norm + 1e-8``: the same to ~1e-8 relative for non-zero nodes).

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

    Algorithm (``algorithm``): ``'chunked'`` as above; ``'gram'`` the same value through the channel Gram
    matrices, ``||A^T A - B^T B||^2 = ||A A^T||^2 - 2 ||A B^T||^2 + ||B B^T||^2`` in float64, which costs
    ``O(N C^2)`` instead of ``O(N^2 C)`` and never holds an ``N x N`` block; ``'auto'`` (default) takes
    ``'gram'`` when the graph has more nodes than the two maps have channels together (``N > Ca + Cb``: every
    pixel of a 64 x 128 decoder map, 8192 nodes with 128 + 512 channels, is ~30x fewer operations), else
    ``'chunked'`` (the reference's 2 x 2 node grid). Both give the reference's value (tested against the direct
    formula and each other, gradients too).

    Defaults: ``pool='max'``, ``grid=None``, ``scale=0.5``, ``cross_image=False``, ``chunk_size=None``,
    ``detach_norm=True``, ``eps=1e-8``, ``algorithm='auto'``.
    """

    ALGORITHMS = ("auto", "chunked", "gram")

    def __init__(self, pool: str = "max", grid: Sequence[int] | int | None = None, scale: float | None = 0.5,
                 cross_image: bool = False, chunk_size: int | None = None, detach_norm: bool = True,
                 eps: float = 1e-8, algorithm: str = "auto"):
        super().__init__()
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"PairWiseKD: algorithm must be one of {', '.join(map(repr, self.ALGORITHMS))}, "
                             f"got {algorithm!r}")
        self.algorithm = algorithm
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
            if self.algorithm == "gram" or (self.algorithm == "auto" and n > ns.shape[1] + nt.shape[1]):
                return _gram_similarity_mse(ns, nt)
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

    i.e. KL(teacher || student) summed over positions (and the teacher's ``Ct`` channels), divided by the
    number of images and by ``C``. Which ``C``: CIRKD's ``CriterionCWD(norm_type='channel', divergence='kl')``
    reads ``n, c, h, w`` from the student map BEFORE its 1x1 connector, so it divides by the student's
    channel count ``Cs``; the paper's equation (and MMRazor's ``ChannelWiseDivergence``, which has no
    connector) divides by the channels of the maps compared, i.e. ``Ct``. ``channel_norm='student'`` (default)
    reproduces CIRKD (whose weights, e.g. ``--lambda-cwd-fea 50``, configs/cityscapes/cirkd use), and
    ``channel_norm='teacher'`` the paper's form; the two differ by the factor ``Cs / Ct`` (and agree when the
    widths are equal). "The student's channels" are those of the tensor this loss receives: behind a
    term-level ``connector='conv'`` (the distiller's adapter) that is already ``Ct``.

    Shapes: student ``B x Cs x Hs x Ws``, teacher ``B x Ct x H x W``. When channels differ, a 1x1
    conv + BN connector (:class:`~densekd.nn.connectors.ConvConnector`, a learnable part of this loss)
    maps the student to ``Ct`` channels; it is built from ``s_shapes``/``t_shapes`` (the distiller passes
    them). CIRKD's connector is a bias-free 1x1 conv without BN. When resolutions differ the (connected)
    student map is bilinearly resized to the teacher's. Several taps -> sum of per-tap losses.

    Defaults: ``T=4.0`` (CIRKD's setting for segmentation logits / features; MMRazor's Cityscapes logits
    config uses ``tau=1, loss_weight=5``), ``channel_norm='student'``.
    """

    def __init__(self, T: float = 4.0, s_shapes: Sequence[torch.Size] | None = None,
                 t_shapes: Sequence[torch.Size] | None = None, channel_norm: str = "student"):
        super().__init__()
        if T <= 0:
            raise ValueError(f"CWD: temperature T must be > 0, got {T}")
        if channel_norm not in ("student", "teacher"):
            raise ValueError(f"CWD: channel_norm must be 'student' (CIRKD: divide by the student's channels before "
                             f"the connector) or 'teacher' (the paper's C of the compared maps), got {channel_norm!r}")
        self.T = float(T)
        self.channel_norm = channel_norm
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
        s_channels = s.shape[1]
        if i < len(self.connectors):
            s = self.connectors[i](s)
        if s.shape[1] != t.shape[1]:
            raise ValueError(f"CWD: student {tuple(s.shape)} and teacher {tuple(t.shape)} have different channel "
                             f"counts and no connector was built for tap {i}; construct CWD with "
                             f"s_shapes/t_shapes (the distiller passes them) so a 1x1 conv connector is created")
        s = _resize(s, t.shape[-2:])
        b = t.shape[0]
        c = s_channels if self.channel_norm == "student" else t.shape[1]
        log_ps = F.log_softmax(s.float().flatten(2) / self.T, dim=2)
        log_pt = F.log_softmax(t.detach().float().flatten(2) / self.T, dim=2)
        return (log_pt.exp() * (log_pt - log_ps)).sum() * (self.T ** 2) / (b * c)

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "CWD")
        return sum(self._one(i, s, t) for i, (s, t) in enumerate(zip(s_list, t_list)))


# ----------------------------------------------------------------------------------------------- DIST (dense)
@LOSSES.register()
class DenseDIST(nn.Module):
    """DIST for dense logits (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher",
    semantic-segmentation experiments; the authors' segmentation release hunto/DIST_KD, built on CIRKD).

    Every pixel is an instance: the logits ``B x C x H x W`` become ``Y = softmax(z / T)`` per pixel, and with
    DIST's Pearson relations (:func:`~densekd.losses.logits.dist_relations`)

    - inter-class relation: ``1 - mean over pixels of rho(Y_s[pixel, :], Y_t[pixel, :])`` (over the C classes);
    - intra-class relation: ``1 - mean over classes of rho(Y_s[:, c], Y_t[:, c])`` over the pixels of the
      whole batch (``intra='batch'``, the release: it reshapes the logits to ``(B*H*W) x C``), or over the
      pixels of each image, then averaged over images (``intra='image'``);
    - ``loss = T^2 * (beta * inter + gamma * intra)``.

    When the resolutions differ the student logits are bilinearly resized to the teacher's (as
    :class:`PixelWiseKD`). ``ignore_index=None`` (default, as the release) uses every pixel; an integer drops
    the pixels whose label (``extra['target']``, nearest-resized) equals it. ``logit_std=True`` z-scores each
    pixel's logits over the classes first (our extension of Sun et al., CVPR 2024). Several taps -> sum.

    Defaults: ``beta=1, gamma=1, T=1`` (the release: ``DIST()`` with no temperature, weight ``--lambda-kd 1``
    on the main logits, plus ``0.4 * lambda`` on the auxiliary head's logits, which densekd's teachers do not
    compute in eval mode, so configs/cityscapes/cirkd/*_dist.py leave that term out), ``intra='batch'``,
    ``ignore_index=None``, ``logit_std=False``. Under DDP ``'batch'`` is each process's share, as the release
    (2 images per GPU there).
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, T: float = 1.0, intra: str = "batch",
                 ignore_index: int | None = None, logit_std: bool = False, eps: float = 1e-8):
        super().__init__()
        if T <= 0:
            raise ValueError(f"DenseDIST: temperature T must be > 0, got {T}")
        if intra not in ("batch", "image"):
            raise ValueError(f"DenseDIST: intra must be 'batch' (all pixels of the batch, the release) or 'image' "
                             f"(the pixels of each image), got {intra!r}")
        self.beta, self.gamma, self.T = float(beta), float(gamma), float(T)
        self.intra = intra
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.logit_std = bool(logit_std)
        self.eps = float(eps)

    def _one(self, s: torch.Tensor, t: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        check_maps(s, t, "DenseDIST", "logits")
        if s.shape[1] != t.shape[1] or s.shape[1] < 2:
            raise ValueError(f"DenseDIST: student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} need "
                             f"the same number (>= 2) of classes; tap the classifier outputs of both networks")
        s, t = _resize(s, t.shape[-2:]).float(), t.detach().float()
        if self.logit_std:
            s, t = standardize_logits(s), standardize_logits(t)
        b, c = t.shape[:2]
        p_s = F.softmax(s / self.T, dim=1).permute(0, 2, 3, 1).reshape(b, -1, c)  # B x HW x C
        p_t = F.softmax(t / self.T, dim=1).permute(0, 2, 3, 1).reshape(b, -1, c)
        valid = None
        if self.ignore_index is not None and target is not None:
            valid = _label_mask(target, t.shape[-2:], b, self.ignore_index, "DenseDIST").reshape(b, -1)
        if self.intra == "batch":
            if valid is not None:
                rows_s, rows_t = p_s[valid], p_t[valid]
            else:
                rows_s, rows_t = p_s.reshape(-1, c), p_t.reshape(-1, c)
            if rows_s.shape[0] < 2:
                return p_s.sum() * 0.0
            inter, intra = dist_relations(rows_s, rows_t, self.eps)
            return self.T ** 2 * (self.beta * inter + self.gamma * intra)
        # per image: inter over that image's pixels, intra over its pixels; averaged over images (inter weighted
        # by pixels, so that it equals the batch mean of the per-pixel term as in 'batch')
        inter_sum, n_pix, intra_sum, n_img = p_s.new_zeros(()), 0, p_s.new_zeros(()), 0
        for i in range(b):
            rs, rt = (p_s[i], p_t[i]) if valid is None else (p_s[i][valid[i]], p_t[i][valid[i]])
            if rs.shape[0] < 2:
                continue
            inter_i, intra_i = dist_relations(rs, rt, self.eps)
            inter_sum = inter_sum + inter_i * rs.shape[0]
            n_pix += rs.shape[0]
            intra_sum = intra_sum + intra_i
            n_img += 1
        if n_img == 0:
            return p_s.sum() * 0.0
        return self.T ** 2 * (self.beta * inter_sum / n_pix + self.gamma * intra_sum / n_img)

    def forward(self, student, teacher, target: torch.Tensor | None = None, **extra) -> torch.Tensor:
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "DenseDIST")
        return sum(self._one(s, t, target) for s, t in zip(s_list, t_list))


# ----------------------------------------------------------------------------------------------- IFVD
@LOSSES.register()
class IFVD(nn.Module):
    """Intra-class feature variation distillation (Wang et al., ECCV 2020, "Intra-class Feature Variation
    Distillation for Semantic Segmentation").

    Per network and image, with the labels nearest-resized to the feature map's resolution:

    - class prototypes ``p_k = sum_{pixels of class k} f / (n_k + 1e-6)`` (the mean feature of each class in
      that image; pixels labelled ``ignore_index`` or outside ``[0, num_classes)`` belong to no class);
    - the intra-class feature variation map ``M(x) = cos(f(x), p_{y(x)})`` at every labelled pixel, with
      ``cos(a, b) = <a, b> / (max(||a||, 1e-8) max(||b||, 1e-8))`` along the channels;
    - ``loss = sum_{valid pixels} (M_s - M_t)^2 / N``.

    ``N`` is ``B*H*W`` with ``normalize='all'`` (default): the reference (CIRKD's ``CriterionIFV``, like the
    authors' code) takes ``nn.MSELoss`` over every pixel, where an unlabelled pixel is its own "prototype"
    (``cos(f, f)``, the same for both networks) and adds 0; ``normalize='valid'`` divides by the number of
    labelled pixels instead (larger by ``B*H*W / n_valid``). Student and teacher widths may differ (each map
    is a cosine within one network, no connector); their spatial sizes must be equal (tap layers of equal
    output stride, as the reference requires). Features are cast to fp32.

    Needs ``extra['target']`` (``B x H' x W'`` labels), which the distiller passes from the batch.
    Shapes: student ``B x Cs x H x W``, teacher ``B x Ct x H x W`` (lists per tap: sum).
    Defaults: ``num_classes=None`` (every label but ``ignore_index``; the distiller passes the task's class
    count, 19 for Cityscapes), ``ignore_index=255``, ``normalize='all'``. Weights: CIRKD's reproduction
    (``train_ifvd.sh``, the 75.59 mIoU row of its table) uses ``--lambda-ifv 20`` on the ASPP-head features with
    pixel-wise KD weight 1 (configs/cityscapes/cirkd/deeplabv3_r18_ifvd.py); the authors' own release (on the
    structured-KD code, batch-per-image normalisation of its pixel-wise term) used a larger IFV weight (200 as
    we recall it; unverified here).
    """

    def __init__(self, num_classes: int | None = None, ignore_index: int = 255, normalize: str = "all",
                 eps: float = 1e-6, cos_eps: float = 1e-8):
        super().__init__()
        if normalize not in ("all", "valid"):
            raise ValueError(f"IFVD: normalize must be 'all' (reference: mean over every pixel) or 'valid', "
                             f"got {normalize!r}")
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"IFVD: num_classes must be positive or None, got {num_classes}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.ignore_index = int(ignore_index)
        self.normalize = normalize
        self.eps, self.cos_eps = float(eps), float(cos_eps)

    def variation_map(self, f: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
        """``B x HW`` cosine of each pixel's feature with its class prototype (0 where not ``valid``)."""
        b, c = f.shape[:2]
        flat = f.flatten(2)  # B x C x HW
        cls = torch.where(valid, labels, torch.full_like(labels, k)).flatten(1)  # unlabelled -> dummy class k
        onehot = F.one_hot(cls, k + 1).to(flat.dtype)  # B x HW x (k+1)
        sums = torch.bmm(flat, onehot)  # B x C x (k+1)
        protos = sums / (onehot.sum(1, keepdim=True) + self.eps)
        per_pixel = torch.gather(protos, 2, cls[:, None, :].expand(b, c, cls.shape[1]))  # B x C x HW
        dot = (flat * per_pixel).sum(1)
        norms = flat.norm(dim=1).clamp_min(self.cos_eps) * per_pixel.norm(dim=1).clamp_min(self.cos_eps)
        return torch.where(valid.flatten(1), dot / norms, torch.zeros_like(dot))

    def _one(self, s: torch.Tensor, t: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_maps(s, t, "IFVD")
        if s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"IFVD: student {tuple(s.shape)} and teacher {tuple(t.shape)} feature maps differ in "
                             f"spatial size; tap layers of the same output stride (e.g. 'decoder' of both)")
        b = s.shape[0]
        labels = _labels_at(target, s.shape[-2:], b, "IFVD")
        valid = (labels != self.ignore_index) & (labels >= 0)
        if self.num_classes is not None:
            valid &= labels < self.num_classes
            k = self.num_classes
        else:
            k = int(labels[valid].max()) + 1 if bool(valid.any()) else 1
        labels = torch.where(valid, labels, torch.zeros_like(labels))
        with torch.autocast(device_type=s.device.type, enabled=False):
            m_s = self.variation_map(s.float(), labels, valid, k)
            with torch.no_grad():
                m_t = self.variation_map(t.detach().float(), labels, valid, k)
            total = (m_s - m_t).pow(2).sum()
            n = valid.numel() if self.normalize == "all" else valid.sum().clamp(min=1)
            return total / n

    def forward(self, student, teacher, target: torch.Tensor | None = None, **extra) -> torch.Tensor:
        if target is None:
            raise ValueError("IFVD needs the segmentation labels: pass target=<B x H x W label map> (the distiller "
                             "forwards the batch's 'target' in **extra)")
        s_list, t_list = as_list(student), as_list(teacher)
        check_same_length(s_list, t_list, "IFVD")
        return sum(self._one(s, t, target) for s, t in zip(s_list, t_list))
