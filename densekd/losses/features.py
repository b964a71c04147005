"""Feature-map distillation losses: FitNet, AT, NST, OFD, VID, KDSVD, ReviewKD (the two-stage AB, FT, FSP:
``two_stage.py``).

All follow the loss contract (DESIGN.md, "Loss API"): ``forward(student, teacher, **extra) -> scalar``,
where ``student``/``teacher`` are one ``B x C x H x W`` tensor or a list of them (one per tap, same order).
Normalisations follow RepDistiller (HobbitLong/RepDistiller, ``distiller_zoo/``), and OFD follows its
authors' code (clovaai/overhaul-distillation), so that the published weights reproduce the recipes:
FitNet 100, AT 1000, NST 50, VID 1, OFD 1, KDSVD 1; ReviewKD follows its authors' CIFAR-100 release.

Teacher tensors are always detached here, so no gradient ever reaches the teacher. Losses with learnable
parts (regressors, connectors) build them from the observed ``s_shapes`` / ``t_shapes`` (batched
``torch.Size`` per tap) that the distiller passes to the constructor.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densekd.losses._utils import check_channels, epoch_warmup, gram, pool_to_common, require_shape_pair, tap_lists
from densekd.losses.base import TeacherModules
from densekd.nn.connectors import ConvConnector, ConvReg
from densekd.nn.review import ReviewFusion
from densekd.registry import LOSSES

__all__ = ["FitNet", "AT", "NST", "OFD", "VID", "KDSVD", "ReviewKD", "hierarchical_context_loss"]


# ----------------------------------------------------------------------------------------------------------
# FitNet
# ----------------------------------------------------------------------------------------------------------
@LOSSES.register()
class FitNet(nn.Module):
    """FitNets hint loss (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

    ``loss = sum_l mean((r_l(S_l) - T_l)^2)`` where ``r_l`` is a :class:`ConvReg` regressor
    (conv + BN + ReLU; strided conv when the student map is 2x larger, transposed conv when it is 2x
    smaller, a ``(1+Hs-Ht) x (1+Ws-Wt)`` conv otherwise) built from ``s_shapes``/``t_shapes``.

    Shapes: student ``B x Cs x Hs x Ws``, teacher ``B x Ct x Ht x Wt`` (or lists of them).
    Defaults (RepDistiller ``HintLoss`` + ``ConvReg``): one hint layer (``hint_layer=2``, i.e. ``feats[2]``),
    ``relu=True``, weight 100, trained jointly from the start. Departures from the paper: RepDistiller (and
    this class) skips the paper's separate hint-pretraining stage and uses the mean (not the sum / 2) of the
    squared error. Several taps are allowed (the loss is the sum over them); one tap reproduces RepDistiller.
    """

    def __init__(self, s_shapes=None, t_shapes=None, relu: bool = True):
        super().__init__()
        s, t = require_shape_pair(s_shapes, t_shapes, "FitNet")
        self.regressors = nn.ModuleList(ConvReg(a, b, relu=relu) for a, b in zip(s, t))

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "FitNet", dims=4, expected=len(self.regressors))
        loss = 0.0
        for i, (s, t, reg) in enumerate(zip(s_list, t_list, self.regressors)):
            out = reg(s)
            if out.shape != t.shape:
                raise ValueError(f"FitNet: layer {i} regressor maps student {tuple(s.shape)} to "
                                 f"{tuple(out.shape)}, but the teacher map is {tuple(t.shape)}; tap layers of "
                                 f"the sizes seen in the probe forward that built the regressor")
            loss = loss + F.mse_loss(out, t)
        return loss


# ----------------------------------------------------------------------------------------------------------
# AT
# ----------------------------------------------------------------------------------------------------------
def _attention(f: torch.Tensor, p: float) -> torch.Tensor:
    # |f|^p is f^p for an even integer p: no abs forward, no sign backward
    powered = f.pow(int(p)) if float(p).is_integer() and int(p) % 2 == 0 else f.abs().pow(p)
    return F.normalize(powered.mean(1).flatten(1), dim=1)


@LOSSES.register()
class AT(nn.Module):
    """Attention transfer (Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017).

    Attention map of ``f`` (``B x C x H x W``): ``a = vec(mean_c |f_c|^p)`` normalised to unit L2 norm
    (``B x HW``). ``loss = sum_l mean_{b, hw} (a_S - a_T)^2``. When the spatial sizes differ the larger map
    is adaptive-average-pooled to the smaller one (RepDistiller). Student and teacher channel counts may
    differ; no learnable parameters.

    Defaults (RepDistiller ``Attention``): ``p=2``, taps ``feats[1:-1]``, weight 1000. Departure from the
    paper: the paper uses ``beta/2 * ||a_S - a_T||_2`` (a norm, not its square) summed over layers; the
    reference takes the mean of the squared difference, which is what the weight 1000 is tuned for.
    ``|f|^p`` is used as in the paper (RepDistiller's ``f^p`` is the same for the default even ``p``).
    """

    def __init__(self, p: float = 2.0):
        super().__init__()
        self.p = p

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "AT", dims=4)
        loss = 0.0
        for s, t in zip(s_list, t_list):
            s, t = pool_to_common(s, t)
            loss = loss + (_attention(s, self.p) - _attention(t, self.p)).pow(2).mean()
        return loss


# ----------------------------------------------------------------------------------------------------------
# NST
# ----------------------------------------------------------------------------------------------------------
_NORM_EPS = 1e-12  # F.normalize's: a row of norm below it is divided by it instead


def _sq(m: torch.Tensor) -> torch.Tensor:
    """``||m||_F^2`` over every entry (one BLAS dot, no temporary)."""
    return torch.dot(m.reshape(-1), m.reshape(-1))


class _PolyMMD(torch.autograd.Function):
    """NST's squared MMD on the L2-normalised rows of ``s`` (``B x Cs x N``) and ``t`` (``B x Ct x N``), rows
    being the samples: ``mean_ij (t_i.t_j)^2 + mean_ij (s_i.s_j)^2 - 2 mean_ij (s_i.t_j)^2``, each mean over
    (batch, i, j); the gradient flows to ``s`` only (through its normalisation, as ``F.normalize``'s).

    The sums of squared dot products are squared Frobenius norms of Gram matrices, taken from whichever side
    is smaller: the channel side ``s s^T``, ``s t^T``, ``t t^T`` (``Cs x Cs`` ..., cost ``N (Cs + Ct)^2``),
    built from the raw rows and normalised by the norms on their diagonals, or the spatial side ``s^T s``,
    ``t^T t`` (``N x N``, cost ``N^2 (2 Cs + Ct)``), since ``||s t^T||^2 = <s^T s, t^T t>``. The gradient is
    written out: with ``A = s s^T``, ``M = s t^T`` (normalised rows), ``a = 4 / (B Cs^2)``, ``m = -4 / (B Cs
    Ct)``, the gradient for the normalised rows is ``g = a A s + m M t`` and for the raw rows ``(g_i - s_i
    (s_i . g_i)) / n_i`` with ``s_i . g_i = a sum_j A_ij^2 + m sum_j M_ij^2``; on the channel side all of it
    folds into the two small matrices, so the backward is one pair of products over the map."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, cs, n = s.shape
        ct = t.shape[1]
        ctx.scales = a, m = 4.0 / (b * cs * cs), -4.0 / (b * cs * ct)
        ctx.spatial = n * (2 * cs + ct) < (cs + ct) ** 2
        if ctx.spatial:
            ns = torch.linalg.vector_norm(s, dim=2, keepdim=True).clamp_min_(_NORM_EPS)
            s_hat = s / ns
            t_hat = t / torch.linalg.vector_norm(t, dim=2, keepdim=True).clamp_min_(_NORM_EPS)
            g_s, g_t = s_hat.transpose(1, 2) @ s_hat, t_hat.transpose(1, 2) @ t_hat  # B x N x N
            value = _sq(g_t) / (b * ct * ct) + _sq(g_s) / (b * cs * cs) - 2 * torch.dot(
                g_s.reshape(-1), g_t.reshape(-1)) / (b * cs * ct)
            ctx.save_for_backward(s_hat, ns, g_s.mul_(a).add_(g_t, alpha=m))  # the gradient's N x N factor
            return value
        g_ss, g_st, g_tt = s @ s.transpose(1, 2), s @ t.transpose(1, 2), t @ t.transpose(1, 2)
        inv_s = g_ss.diagonal(dim1=1, dim2=2).sqrt().clamp_min(_NORM_EPS).reciprocal_()  # B x Cs: 1 / n_i
        inv_t = g_tt.diagonal(dim1=1, dim2=2).sqrt().clamp_min(_NORM_EPS).reciprocal_()
        g_ss.mul_(inv_s.unsqueeze(2)).mul_(inv_s.unsqueeze(1))
        g_st.mul_(inv_s.unsqueeze(2)).mul_(inv_t.unsqueeze(1))
        g_tt.mul_(inv_t.unsqueeze(2)).mul_(inv_t.unsqueeze(1))
        value = _sq(g_tt) / (b * ct * ct) + _sq(g_ss) / (b * cs * cs) - 2 * _sq(g_st) / (b * cs * ct)
        ctx.save_for_backward(s, t, g_ss, g_st, inv_s, inv_t)
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, m = ctx.scales
        if ctx.spatial:
            s_hat, ns, factor = ctx.saved_tensors
            g = s_hat @ factor                                           # gradient for the normalised rows
            proj = (g * s_hat).sum(2, keepdim=True) * (ns > _NORM_EPS)  # a clamped norm passes no gradient
            return g.sub_(s_hat * proj).div_(ns).mul_(grad), None
        s, t, g_ss, g_st, inv_s, inv_t = ctx.saved_tensors
        live = inv_s < 1.0 / _NORM_EPS
        proj = (a * g_ss.pow(2).sum(2) + m * g_st.pow(2).sum(2)) * live  # s_i . g_i, B x Cs
        p_ss = g_ss * a
        p_ss.diagonal(dim1=1, dim2=2).sub_(proj)
        p_ss.mul_(inv_s.unsqueeze(2)).mul_(inv_s.unsqueeze(1))             # D_s (a A - diag(proj)) D_s
        p_st = (g_st * m).mul_(inv_s.unsqueeze(2)).mul_(inv_t.unsqueeze(1))  # m D_s M D_t
        return torch.bmm(p_ss, s).baddbmm_(p_st, t).mul_(grad), None


@LOSSES.register()
class NST(nn.Module):
    """Neuron selectivity transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
    Selectivity Transfer", arXiv 2017).

    Each channel of a map (``B x C x H x W``) is a sample ``f_c in R^{HW}``, L2-normalised. With the
    polynomial kernel ``k(x, y) = (x . y)^2`` (d=2, c=0) the squared MMD between the student and teacher
    channel distributions is ``mean_ij k(t_i,t_j) + mean_ij k(s_i,s_j) - 2 mean_ij k(s_i,t_j)``, averaged
    over the batch; ``loss = sum_l MMD^2``. Channel counts may differ; spatial sizes are matched by
    adaptive-average-pooling the larger map. No learnable parameters.

    Defaults (RepDistiller ``NSTLoss``, ``full_loss=True``): taps ``feats[1:-1]``, weight 50. The
    teacher-teacher term is a constant (kept so the value is the true MMD^2). The kernel means are computed
    from the smaller of the channel and spatial Gram matrices with a written-out gradient (:class:`_PolyMMD`:
    same values; at CIFAR sizes the 8 x 8 stage is 8x cheaper than channel-wise); the teacher map gets no
    gradient (it is detached, as every teacher tap).
    """

    def __init__(self):
        super().__init__()

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "NST", dims=4)
        loss = 0.0
        for s, t in zip(s_list, t_list):
            s, t = pool_to_common(s, t)
            loss = loss + _PolyMMD.apply(s.flatten(2), t.flatten(2).detach())
        return loss


# ----------------------------------------------------------------------------------------------------------
# OFD
# ----------------------------------------------------------------------------------------------------------
def ofd_margin(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """OFD teacher margin per channel: ``E[x | x < 0]`` for ``x ~ N(mean, std^2)``.

    ``m = mean - std * pdf(mean/std) / cdf(-mean/std)``; where ``cdf(-mean/std) <= 0.001`` (almost no
    negative responses) the reference uses ``-3 std`` instead. Computed in float64.
    """
    mean = mean.detach().double()
    std = std.detach().double().abs()
    safe = std.clamp_min(1e-12)
    z = mean / safe
    cdf = torch.special.ndtr(-z)
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    margin = mean - std * pdf / cdf.clamp_min(1e-300)
    return torch.where(cdf > 1e-3, margin, -3 * std)


def _bn_pair(item: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(item, nn.modules.batchnorm._BatchNorm):
        if item.weight is None or item.bias is None:
            raise ValueError(f"OFD: teacher_bn[{i}] is a BatchNorm without affine parameters; pass "
                             f"(mean, std) tensors instead")
        return item.bias.detach(), item.weight.detach()
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return torch.as_tensor(item[0]).detach(), torch.as_tensor(item[1]).detach()
    raise ValueError(f"OFD: teacher_bn[{i}] must be a (mean, std) pair of per-channel tensors or the "
                     f"teacher's BatchNorm2d before the ReLU, got {type(item).__name__}")


class _PartialL2(torch.autograd.Function):
    """OFD's partial L2, ``sum (s - target)^2`` over the entries where ``s > target`` or ``target > 0``, with
    its gradient ``2 (s - target)`` there (0 elsewhere) written out: one pass backward; ``target`` gets none."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        kept = s - target
        kept.masked_fill_(~((kept > 0) | (target > 0)), 0.0)
        ctx.save_for_backward(kept)
        flat = kept.reshape(-1)
        return torch.dot(flat, flat)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (kept,) = ctx.saved_tensors
        return kept * (2 * grad), None


@LOSSES.register()
class OFD(TeacherModules, nn.Module):
    """Overhaul of feature distillation (Heo et al., "A Comprehensive Overhaul of Feature Distillation",
    ICCV 2019).

    Uses PRE-ReLU maps (tap ``preacts``, typically the end of every stage). The student map goes through a
    connector (1x1 conv + BN, He-normal init, as the reference); the teacher map through the margin ReLU
    ``t' = max(t, m_c)`` where ``m_c = E[x | x < 0]`` for the teacher's per-channel pre-ReLU distribution
    ``N(mu_c, sigma_c^2)`` (:func:`ofd_margin`). Partial L2: ``d = (s - t')^2`` except where
    ``s <= t' <= 0`` (then 0). ``loss = sum_l sum(d_l) / 2^(L-1-l) / B / 1000`` (the reference CIFAR
    normalisation; its ImageNet script divides by 10000 instead, i.e. use weight 0.1 there).

    Margin statistics: the reference reads ``mu, sigma`` from the teacher BN before the ReLU (``beta``,
    ``|gamma|``). Since a loss sees tensors, not models, pass ``teacher_bn`` -- one entry per tap, each a
    ``(mean, std)`` pair of ``C`` tensors or the ``BatchNorm2d`` module itself (a single pair/module is
    accepted for one tap). Without it the margin is ESTIMATED from the teacher features: per-channel mean and
    (biased) std over batch and space are accumulated over the first ``estimate_batches`` forward calls
    (default 10, any train/eval mode, not synchronised across processes) and the margin recomputed after
    each; then it is frozen. Margins and statistics are buffers (saved in checkpoints). In a config,
    ``teacher_bn`` may name the teacher's modules: module paths, or ``'bn_before_relu'`` (the CIFAR zoo's list
    of the BNs before each ``preacts[1:-1]`` ReLU, as RepDistiller's ``get_bn_before_relu``); the distiller
    resolves them on the (trained) teacher.

    Shapes: student ``B x Cs x H x W``, teacher ``B x Ct x H x W`` (same spatial size; lists per tap).
    Defaults: weight 1, ``estimate_batches=10``.
    """

    teacher_module_args = ("teacher_bn",)  # the distiller turns module paths in the config into modules

    def __init__(self, s_shapes=None, t_shapes=None, teacher_bn=None, estimate_batches: int = 10):
        super().__init__()
        s, t = require_shape_pair(s_shapes, t_shapes, "OFD")
        for i, (a, b) in enumerate(zip(s, t)):
            if tuple(a[2:]) != tuple(b[2:]):
                raise ValueError(f"OFD: layer {i} student {tuple(a)} and teacher {tuple(b)} differ in spatial "
                                 f"size; OFD's 1x1 connector needs equal H x W, tap layers of equal resolution")
        self.connectors = nn.ModuleList(ConvConnector(a[1], b[1]) for a, b in zip(s, t))
        for conn in self.connectors:
            nn.init.kaiming_normal_(conn[0].weight, mode="fan_out", nonlinearity="relu")
        self.num_layers = len(s)
        self._t_channels = [b[1] for b in t]
        self.estimate_batches = int(estimate_batches)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))
        if teacher_bn is not None:
            if isinstance(teacher_bn, nn.modules.batchnorm._BatchNorm) or (
                    isinstance(teacher_bn, (tuple, list)) and len(teacher_bn) == 2
                    and isinstance(teacher_bn[0], torch.Tensor)):
                teacher_bn = [teacher_bn]
            if len(teacher_bn) != self.num_layers:
                raise ValueError(f"OFD: teacher_bn has {len(teacher_bn)} entries but {self.num_layers} layers "
                                 f"are tapped; give one (mean, std) pair or BatchNorm2d per teacher tap")
            self.estimate = False
        else:
            self.estimate = True
        for i, c in enumerate(self._t_channels):
            if teacher_bn is not None:
                mean, std = _bn_pair(teacher_bn[i], i)
                if mean.numel() != c or std.numel() != c:
                    raise ValueError(f"OFD: teacher_bn[{i}] has {mean.numel()}/{std.numel()} values but the "
                                     f"teacher tap has {c} channels; pass the BN right before that ReLU")
                margin = ofd_margin(mean.flatten(), std.flatten()).float()
            else:
                margin = torch.zeros(c)
            self.register_buffer(f"margin{i}", margin)
            if self.estimate:
                self.register_buffer(f"stat_sum{i}", torch.zeros(c, dtype=torch.float64))
                self.register_buffer(f"stat_sumsq{i}", torch.zeros(c, dtype=torch.float64))
                self.register_buffer(f"stat_count{i}", torch.zeros((), dtype=torch.float64))

    def margins(self) -> list[torch.Tensor]:
        return [getattr(self, f"margin{i}") for i in range(self.num_layers)]

    @torch.no_grad()
    def _update_margins(self, t_list: list[torch.Tensor]) -> None:
        for i, t in enumerate(t_list):
            x = t.double()
            s_sum, s_sq, s_n = (getattr(self, f"stat_sum{i}"), getattr(self, f"stat_sumsq{i}"),
                                getattr(self, f"stat_count{i}"))
            s_sum += x.sum(dim=(0, 2, 3))
            s_sq += x.pow(2).sum(dim=(0, 2, 3))
            s_n += x.shape[0] * x.shape[2] * x.shape[3]
            mean = s_sum / s_n
            std = (s_sq / s_n - mean.pow(2)).clamp_min(0).sqrt()
            getattr(self, f"margin{i}").copy_(ofd_margin(mean, std))
        self.batches_seen += 1

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "OFD", dims=4, expected=self.num_layers)
        for i, t in enumerate(t_list):
            check_channels("OFD", i, t, self._t_channels[i], "teacher")
        if self.estimate and int(self.batches_seen) < self.estimate_batches:
            self._update_margins(t_list)
        batch = s_list[0].shape[0]
        loss = 0.0
        for i, (s, t, conn) in enumerate(zip(s_list, t_list, self.connectors)):
            s = conn(s)
            if s.shape != t.shape:
                raise ValueError(f"OFD: layer {i} connected student map {tuple(s.shape)} does not match the "
                                 f"teacher map {tuple(t.shape)}; tap layers of equal spatial size")
            target = torch.maximum(t, getattr(self, f"margin{i}").to(t.dtype).view(1, -1, 1, 1))
            layer = _PartialL2.apply(s, target)
            loss = loss + layer / 2 ** (self.num_layers - 1 - i)
        return loss / batch / 1000


# ----------------------------------------------------------------------------------------------------------
# VID
# ----------------------------------------------------------------------------------------------------------
@LOSSES.register()
class VID(nn.Module):
    """Variational information distillation (Ahn et al., "Variational Information Distillation for
    Knowledge Transfer", CVPR 2019).

    Per tap a regressor ``mu(S)`` (1x1 conv ``Cs->M``, ReLU, 1x1 ``M->M``, ReLU, 1x1 ``M->Ct``, no bias)
    predicts the teacher map and a learnable per-channel variance ``sigma_c^2 = softplus(alpha_c) + eps``
    (initialised to ``init_pred_var``). Gaussian negative log-likelihood (constant dropped):

        ``loss = sum_l mean_{b,c,h,w} 0.5 * ((mu(S) - T)^2 / sigma_c^2 + log sigma_c^2)``

    If spatial sizes differ, the larger map is adaptive-average-pooled first.
    Shapes: student ``B x Cs x H x W``, teacher ``B x Ct x H' x W'`` (lists, one per tap).
    Defaults (RepDistiller ``VIDLoss``): ``mid_channels`` = teacher channels, ``init_pred_var=5.0``,
    ``eps=1e-5``, taps ``feats[1:-1]``, weight 1.
    """

    def __init__(self, s_shapes=None, t_shapes=None, mid_channels: int | None = None,
                 init_pred_var: float = 5.0, eps: float = 1e-5):
        super().__init__()
        if init_pred_var <= eps:
            raise ValueError(f"VID: init_pred_var={init_pred_var} must exceed eps={eps}")
        s, t = require_shape_pair(s_shapes, t_shapes, "VID")
        self.regressors = nn.ModuleList()
        self.log_scales = nn.ParameterList()
        alpha = math.log(math.expm1(init_pred_var - eps))  # inverse softplus
        for a, b in zip(s, t):
            mid = mid_channels or b[1]
            self.regressors.append(nn.Sequential(
                nn.Conv2d(a[1], mid, 1, bias=False), nn.ReLU(),
                nn.Conv2d(mid, mid, 1, bias=False), nn.ReLU(),
                nn.Conv2d(mid, b[1], 1, bias=False)))
            self.log_scales.append(nn.Parameter(torch.full((b[1],), alpha)))
        self._s_channels = [a[1] for a in s]
        self._t_channels = [b[1] for b in t]
        self.eps = eps

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "VID", dims=4, expected=len(self.regressors))
        loss = 0.0
        for i, (s, t) in enumerate(zip(s_list, t_list)):
            check_channels("VID", i, s, self._s_channels[i], "student")
            check_channels("VID", i, t, self._t_channels[i], "teacher")
            s, t = pool_to_common(s, t)
            mean = self.regressors[i](s)
            var = (F.softplus(self.log_scales[i]) + self.eps).view(1, -1, 1, 1)
            loss = loss + (0.5 * ((mean - t).pow(2) / var + var.log())).mean()
        return loss


# ----------------------------------------------------------------------------------------------------------
# KDSVD
# ----------------------------------------------------------------------------------------------------------
def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _zero_nonfinite_grad(x: torch.Tensor) -> torch.Tensor:
    """A view of ``x`` whose gradient has its non-finite entries replaced by 0 on the way back (only the
    gradient flowing through this view: other terms reading ``x`` are not affected)."""
    if not x.requires_grad:
        return x
    y = x.view_as(x)
    y.register_hook(lambda g: torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0))
    return y


class _TopEigh(torch.autograd.Function):
    """The ``n`` largest eigenpairs of symmetric ``A`` (``B x C x C``): vectors ``B x C x n`` and values ``B x n``,
    largest first (``torch.linalg.eigh``). The backward keeps only the terms of the used pairs,
    ``gA = Q (F o Q^T gV) V^T + V diag(g_lambda) V^T`` (symmetrised) with ``F_ij = 1 / (lambda_j - lambda_i)`` for
    the used ``j`` and every ``i != j``: eigenvalues repeated among the unused ones (an all-zero channel, a
    rank-deficient map) leave it finite, where the full formula divides 0 by 0; a used value repeated elsewhere
    (equal to within ``C eps max|lambda|``, rounding) gives those entries 0."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, n: int):
        lam, q = torch.linalg.eigh(a)
        top_lam, top_v = lam[:, -n:].flip(-1), q[:, :, -n:].flip(-1)
        ctx.save_for_backward(lam, q, top_lam, top_v)
        return top_v, top_lam

    @staticmethod
    def backward(ctx, g_v: torch.Tensor | None, g_lam: torch.Tensor | None):
        lam, q, top_lam, top_v = ctx.saved_tensors
        c, n = q.shape[1], top_v.shape[2]
        grad = torch.zeros_like(q)
        if g_v is not None:
            gap = top_lam[:, None, :] - lam[:, :, None]            # B x C x n: lambda_j - lambda_i
            own = torch.arange(c - 1, c - 1 - n, -1, device=q.device)  # row of each used vector in q
            gap[:, own, torch.arange(n, device=q.device)] = float("inf")
            # gaps within rounding of the spectrum (C eps max|lambda|) count as repeated values: 0, not 1 / noise
            tol = torch.finfo(lam.dtype).eps * c * lam.abs().amax(-1)[:, None, None]
            factor = torch.where(gap.abs() <= tol, torch.zeros_like(gap), 1.0 / gap)
            grad = q @ (factor * (q.transpose(1, 2) @ g_v)) @ top_v.transpose(1, 2)
        if g_lam is not None:
            grad = grad + (top_v * g_lam[:, None, :]) @ top_v.transpose(1, 2)
        return (grad + grad.transpose(1, 2)) / 2, None


@LOSSES.register()
class KDSVD(nn.Module):
    """Self-supervised KD with singular value decomposition (Lee, Kim & Song, ECCV 2018, "Self-supervised
    Knowledge Distillation Using Singular Value Decomposition"), as RepDistiller's ``KDSVD`` (from the
    authors' TensorFlow code).

    Per tapped layer ``l`` each map ``B x C x H x W`` is reshaped to ``X = B x HW x C`` and decomposed,
    ``X = U S V^T`` (``torch.linalg.svd``, reduced). The teacher keeps its top ``k`` right singular vectors
    ``V_t`` (``B x C x k``) and the student its top ``k + 3``; each teacher vector ``j`` takes the student
    vector of largest ``|cos|`` with it, times the sign of that cosine (sign alignment), giving ``V_s``
    (``B x C x k``). The teacher's top-``k`` singular values, L2-normalised per sample, ``s_t``, scale both:
    ``v = V * s_t``. Between consecutive taps ``l - 1, l`` a radial-basis function of the differences between
    the entries of the singular vectors of the two layers,

        ``G[b, i, j, m] = exp(-(v^l[b, i, m] - v^{l-1}[b, j, m])^2 / 8)``  (``B x C_l x C_{l-1} x k``),

    is computed for both networks and ``loss = sum_{l >= 1} sum (G_s - G_t)^2 / B`` (non-finite entries are
    set to 0, as the reference). Needs at least 2 taps (RepDistiller taps ``feats[1:-1]``); student and teacher
    widths must be equal per tap (the alignment compares C-dimensional vectors; use ``connector='conv'``
    otherwise, as configs/cifar100/distill/wrn_40_2-wrn_40_1/kdsvd.py). No learnable parts.

    Departures from RepDistiller: (1) the sign of each teacher singular vector is fixed so that its
    largest-magnitude entry is positive (an SVD's signs are arbitrary and differ between LAPACK and cuSOLVER;
    the reference's value depends on them, since the RBF compares vectors of two layers); the student's sign
    is aligned to the teacher's as in the reference, so its own convention does not matter; (2) maps are
    reshaped with ``H*W`` (the reference writes ``H*H``, wrong for non-square maps) and decomposed in fp32 with
    autocast off; (3) ties in the alignment (equal ``|cos|``) pick the first student vector (the reference
    adds all tied ones); (4) non-finite entries of the gradient that reaches the student map (the SVD's
    backward divides by differences of singular values, infinite when two are equal, e.g. for an all-zero map)
    are set to 0, where the reference would propagate NaN; (5) the top singular vectors and values come from the
    eigendecomposition of the smaller Gram matrix (``X^T X`` or ``X X^T``, :meth:`right_singular`), not from an
    SVD of ``X``: the same vectors to float32 rounding (measured ``1 - |cos| < 1e-6`` on CIFAR-size maps, as a
    float32 SVD against a float64 one), 3-4x faster per decomposition (the term's forward + backward on the
    resnet32x4 -> resnet8x4 taps, batch 64, one CPU thread: 491 -> 179 ms, the benchmark's loss-modules time),
    and its backward keeps only the used vectors' terms (:class:`_TopEigh`), so repeated unused singular values
    (dead channels) no longer make it non-finite.

    Defaults: ``k=1`` (RepDistiller and mdistiller ``KDSVD.K``), ``extra_vectors=3``, ``rbf_scale=8``; term
    weight 1 with CE weight 1 (mdistiller ``KDSVD.LOSS.FEAT_WEIGHT = CE_WEIGHT = 1.0``).
    """

    def __init__(self, k: int = 1, extra_vectors: int = 3, rbf_scale: float = 8.0):
        super().__init__()
        if int(k) < 1 or int(extra_vectors) < 0:
            raise ValueError(f"KDSVD: k must be >= 1 and extra_vectors >= 0, got k={k}, extra_vectors={extra_vectors}")
        if not rbf_scale > 0:
            raise ValueError(f"KDSVD: rbf_scale must be > 0, got {rbf_scale}")
        self.k, self.extra_vectors, self.rbf_scale = int(k), int(extra_vectors), float(rbf_scale)

    @staticmethod
    def right_singular(f: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``n`` right singular vectors ``B x C x n`` and singular values ``B x n`` of ``f`` viewed as
        ``X = B x HW x C`` (at least fp32; non-finite values set to 0), from the eigendecomposition of the smaller
        Gram matrix: ``X^T X`` (``C x C``; its eigenvectors are ``V``) when ``C <= HW``, else ``X X^T`` (``HW x HW``;
        ``V = X^T U / sigma``), ``sigma = sqrt(lambda)``."""
        rows = f.flatten(2)                               # B x C x HW, i.e. X^T
        if rows.dtype in (torch.float16, torch.bfloat16):
            rows = rows.float()
        c, hw = rows.shape[1], rows.shape[2]
        n = min(n, c, hw)
        vectors, lam = _TopEigh.apply(gram(rows if c <= hw else rows.transpose(1, 2)), n)
        sv = lam.clamp_min(0.0).sqrt()
        v = vectors if c <= hw else (rows @ vectors) / sv[:, None, :]  # V = X^T U / sigma from the HW side
        return _finite(v), _finite(sv)

    @staticmethod
    def fix_signs(v: torch.Tensor) -> torch.Tensor:
        """Flip each column of ``v`` (``B x C x n``) so that its largest-magnitude entry is positive."""
        idx = v.abs().argmax(dim=1, keepdim=True)
        sign = torch.sign(torch.gather(v, 1, idx))
        return v * torch.where(sign == 0, torch.ones_like(sign), sign)

    @staticmethod
    def align(v_s: torch.Tensor, v_t: torch.Tensor) -> torch.Tensor:
        """For each teacher vector (``B x C x k``), the student vector (``B x C x n``) of largest |cos| with it,
        times the sign of that cosine: ``B x C x k``."""
        cos = torch.bmm(v_s.transpose(1, 2), v_t).detach()  # B x n x k
        idx = cos.abs().argmax(dim=1)  # B x k
        sign = torch.sign(torch.gather(cos, 1, idx[:, None, :]))  # B x 1 x k
        picked = torch.gather(v_s, 2, idx[:, None, :].expand(-1, v_s.shape[1], -1))
        return picked * sign

    def _rbf(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(a[:, :, None, :] - b[:, None, :, :]).pow(2) / self.rbf_scale)

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "KDSVD", dims=4, min_layers=2)
        for i, (s, t) in enumerate(zip(s_list, t_list)):
            if s.shape[1] != t.shape[1]:
                raise ValueError(f"KDSVD: layer {i} student {tuple(s.shape)} and teacher {tuple(t.shape)} differ in "
                                 f"channels; the sign alignment compares C-dimensional singular vectors, so widths "
                                 f"must match (add connector='conv' to the term)")
        batch = s_list[0].shape[0]
        loss, prev = None, None
        with torch.autocast(device_type=s_list[0].device.type, enabled=False):
            for s, t in zip(s_list, t_list):
                with torch.no_grad():
                    v_t, sv_t = self.right_singular(t, self.k)
                    v_t = self.fix_signs(v_t)
                    scale = F.normalize(sv_t, dim=1)[:, None, :]  # B x 1 x k
                v_s, _ = self.right_singular(_zero_nonfinite_grad(s), self.k + self.extra_vectors)
                v_s = self.align(v_s, v_t)
                if v_s.shape[2] != v_t.shape[2]:
                    raise ValueError(f"KDSVD: a {tuple(s.shape)} map has fewer than k={self.k} singular vectors")
                cur = (v_s * scale, v_t * scale)
                if prev is not None:
                    with torch.no_grad():
                        g_t = self._rbf(cur[1], prev[1])
                    d = (self._rbf(cur[0], prev[0]) - g_t).pow(2)
                    term = _finite(d).sum() / batch
                    loss = term if loss is None else loss + term
                prev = cur
        return loss


# ----------------------------------------------------------------------------------------------------------
# ReviewKD
# ----------------------------------------------------------------------------------------------------------
def _as_map(x: torch.Tensor) -> torch.Tensor:
    """A pooled ``B x C`` vector as a ``B x C x 1 x 1`` map; maps pass through."""
    return x[:, :, None, None] if x.dim() == 2 else x


def hierarchical_context_loss(student: list[torch.Tensor], teacher: list[torch.Tensor],
                              pool_sizes: tuple[int, ...] = (4, 2, 1)) -> torch.Tensor:
    """ReviewKD's hierarchical context loss (HCL) over levels of equal shapes ``B x C x H x W``.

    Per level: ``(mse(S, T) + sum_k 2^-k mse(P_k(S), P_k(T))) / (1 + sum_k 2^-k)``, where ``P_k`` is adaptive
    average pooling to ``l_k x l_k`` for the ``k``-th size ``l_k`` of ``pool_sizes`` smaller than the map
    (``l < min(H, W)``; ``k`` counts only those, from 1) and ``mse`` is the mean over all elements. The levels
    are summed. A 1 x 1 level (the pooled vector) is its plain MSE.
    """
    total = 0.0
    for s, t in zip(student, teacher):
        level = F.mse_loss(s, t)
        weight, norm = 1.0, 1.0
        for size in pool_sizes:
            if size >= min(s.shape[2], s.shape[3]):
                continue
            weight /= 2.0
            level = level + weight * F.mse_loss(F.adaptive_avg_pool2d(s, size), F.adaptive_avg_pool2d(t, size))
            norm += weight
        total = total + level / norm
    return total


@LOSSES.register()
class ReviewKD(nn.Module):
    """Knowledge review (Chen, Liu, Zhao & Jia, CVPR 2021, "Distilling Knowledge via Knowledge Review").

    The student's ``L`` tapped levels (shallow -> deep) pass through :class:`~densekd.nn.review.ReviewFusion`:
    from the deepest level up, each is reduced to ``mid_channels`` (1x1 conv + BN), fused with the residual of
    the level below by two learned spatial attention maps (ABF), and mapped to the teacher level's width and
    size (3x3 conv + BN). The outputs are compared with the teacher's levels by the hierarchical context loss
    (:func:`hierarchical_context_loss`: MSE at full resolution plus MSE after adaptive average pooling to 4, 2
    and 1 with weights 1/2, 1/4, 1/8, normalised by their sum, levels summed):

        ``loss = warm(epoch) * sum_l HCL(ABF_l(S_l, residual_{l+1}), T_l)``

    with ``warm = min((floor(epoch) + 1) / warmup, 1)``, mdistiller's linear warm-up counting epochs from 1
    (the first step 1/20), from the trainer's ``epoch`` in ``**extra`` (1 without it).

    Shapes: student taps ``B x Cs_l x Hs_l x Ws_l`` and teacher taps ``B x Ct_l x Ht_l x Wt_l``, one per level,
    same count; a ``B x C`` tap (the pooled pre-logit vector) is a ``1 x 1`` level. Learnable parts are built
    from ``s_shapes`` / ``t_shapes`` and train with the student.

    Defaults, from the authors' CIFAR-100 release (``CIFAR-100/model/reviewkd.py``, ``train.py``) and
    mdistiller's ``ReviewKD``: ``mid_channels = min(512, Cs of the deepest level)`` (256 for resnet8x4, 64 for
    resnet20/32 and wrn_40_1, 128 for wrn_16_2, 512 for vgg8), ``warmup=20`` epochs; taps: the student's stage
    outputs after the ReLU plus the pooled vector (``feats[1:]``), the teacher's stage outputs before the ReLU
    plus the pooled vector (``preacts[1:]``); CE weight 1 and, per pair, the release's ``--kd-loss-weight``
    (5 for resnet32x4 -> resnet8x4, as mdistiller's ``REVIEWKD_WEIGHT: 5.0``; configs/_base_/cifar100/methods/
    reviewkd.py lists the others).

    Departures: (1) the warm-up counts epochs from 1 (mdistiller); the authors' ``train.py`` uses
    ``min(1, epoch / 20)`` with epochs from 0, i.e. no review loss during the first epoch; (2) a pooling size
    is used when it is smaller than both sides of the map (the release compares it with the height only; the
    same for the square CIFAR maps); (3) maps may be non-square and the sizes come from the tapped shapes
    instead of per-architecture tables (``shapes`` / ``out_shapes`` in the release; equal for its pairs).
    """

    def __init__(self, s_shapes=None, t_shapes=None, mid_channels: int | None = None, max_mid_channels: int = 512,
                 warmup: float = 20.0, pool_sizes: tuple[int, ...] = (4, 2, 1)):
        super().__init__()
        s, t = require_shape_pair(s_shapes, t_shapes, "ReviewKD", dims=None)
        for i, (a, b) in enumerate(zip(s, t)):
            for who, shape in (("student", a), ("teacher", b)):
                if len(shape) not in (2, 4):
                    raise ValueError(f"ReviewKD: {who} tap {i} has shape {tuple(shape)}; tap B x C x H x W maps or "
                                     f"the pooled B x C vector (e.g. student='feats[1:]', teacher='preacts[1:]')")
        if warmup < 0:
            raise ValueError(f"ReviewKD: warmup must be >= 0 epochs, got {warmup}")
        self._s_channels = [int(a[1]) for a in s]
        self._t_channels = [int(b[1]) for b in t]
        t_sizes = [tuple(b[2:]) if len(b) == 4 else (1, 1) for b in t]
        mid = int(mid_channels) if mid_channels is not None else min(int(max_mid_channels), self._s_channels[-1])
        self.fusion = ReviewFusion(self._s_channels, self._t_channels, t_sizes, mid)
        self.warmup = float(warmup)
        self.pool_sizes = tuple(int(p) for p in pool_sizes)

    def forward(self, student, teacher, epoch: float | None = None, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "ReviewKD", expected=len(self._s_channels))
        s_list, t_list = [_as_map(x) for x in s_list], [_as_map(x) for x in t_list]
        for i, (s, t) in enumerate(zip(s_list, t_list)):
            if s.dim() != 4 or t.dim() != 4:
                raise ValueError(f"ReviewKD: layer {i} has student {tuple(s.shape)} and teacher {tuple(t.shape)}; "
                                 f"tap B x C x H x W maps or B x C pooled vectors")
            check_channels("ReviewKD", i, s, self._s_channels[i], "student")
            check_channels("ReviewKD", i, t, self._t_channels[i], "teacher")
        outputs = self.fusion(s_list)
        for i, (o, t) in enumerate(zip(outputs, t_list)):
            if o.shape != t.shape:
                raise ValueError(f"ReviewKD: level {i} fused student map {tuple(o.shape)} does not match the teacher "
                                 f"map {tuple(t.shape)}; tap the layers of the probe forward that built the loss")
        return epoch_warmup(epoch, self.warmup) * hierarchical_context_loss(outputs, t_list, self.pool_sizes)
