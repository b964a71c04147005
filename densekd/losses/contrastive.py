"""Contrastive distillation: CRD with its memory bank (NCE objective) and the InfoNCE variant.

Reference: Tian, Krishnan, Isola, "Contrastive Representation Distillation", ICLR 2020, and the authors'
RepDistiller code (``crd/criterion.py``, ``crd/memory.py``). The per-sample indices and the
negatives come from :class:`densekd.data.crd.CRDSampleDataset`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from densekd.nn.connectors import LinearEmbed
from densekd.losses.base import RankSynchronised
from densekd.losses._utils import all_gather_rows as _all_gather_rows, as_list, shape_list
from densekd.losses._utils import distributed_world as _distributed_world
from densekd.registry import LOSSES

__all__ = ["CRD"]
DEVICE_RANGE_CHECKS = 3  # calls that check index ranges on an accelerator (each check waits for the device)


class _NCELoss(torch.autograd.Function):
    """The NCE objective of :class:`CRD` on scores ``s`` (``B x (K+1)``, positive first), in one pass each way.

    With ``P = exp(s) / Z``, ``c = K / N`` and ``u = log(P / (c + eps)) = s - shift``, the reference's terms
    are ``log(P_0 / (P_0 + c + eps)) = u_0 - softplus(u_0)`` and ``log(c / (P_i + c + eps)) = log(c / (c + eps))
    - softplus(u_i)``, so the loss is ``(sum_{b,i} softplus(u_bi) - sum_b u_b0) / B - K log(c / (c + eps))``
    (``const`` is the last term) and its gradient ``(sigmoid(u) - [i = 0]) / B``: a few elementwise passes
    forward, one sigmoid backward, finite when ``exp(s)`` would overflow."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, shift: torch.Tensor, const: float) -> torch.Tensor:
        u = scores - shift
        ctx.save_for_backward(u)
        # softplus(u) = max(u, 0) + log(1 + exp(-|u|)), in passes that vectorise (a float32 log1p does not on
        # CPUs: 10x slower); log(1 + x) for x = exp(-|u|) in (0, 1] errs by at most half an ulp of 1 (6e-8
        # absolute), the float32 error of the reference's own log(P / (P + c + eps))
        tail = u.abs().neg_().exp_().add_(1.0).log_()
        return (tail.sum() + u.clamp_min(0).sum() - u[:, 0].sum()) / scores.shape[0] - const

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (u,) = ctx.saved_tensors
        out = torch.sigmoid(u)
        out[:, 0] -= 1.0
        return out.mul_(grad / u.shape[0]), None, None


@LOSSES.register()
class CRD(RankSynchronised, nn.Module):
    """Contrastive Representation Distillation (Tian et al., ICLR 2020), RepDistiller's ``CRDLoss``.

    Student and teacher features (one tap each, usually the pooled ``'feats[-1]'``, shape ``B x Ds`` /
    ``B x Dt``; maps are flattened) are embedded by :class:`LinearEmbed` heads (linear + L2 norm) into
    ``B x feat_dim`` unit vectors ``e_s``, ``e_t``. Two memory banks of shape ``num_data x feat_dim``
    (buffers ``memory_s``, ``memory_t``, saved in checkpoints) hold a running embedding of every training
    sample. With ``contrast_idx`` (``B x (nce_k+1)``, positive first) the loss contrasts both ways:

    * student anchor against teacher memory: ``s_i = <memory_t[contrast_idx[b, i]], e_s[b]> / nce_t``;
    * teacher anchor against student memory: ``s_i = <memory_s[contrast_idx[b, i]], e_t[b]> / nce_t``.

    ``objective='nce'`` (the paper's Eq. 18, RepDistiller's ``ContrastLoss``): with ``P = exp(s) / Z``,
    ``K = nce_k``, ``N = num_data`` and the noise term ``c = K / N``, each direction gives
    ``-(1/B) * sum_b [log(P_b0 / (P_b0 + c + eps)) + sum_{i>=1} log(c / (P_bi + c + eps))]`` with
    ``eps = 1e-7`` inside each log exactly as the reference (``ContrastLoss``: ``P.add(m * Pn + eps)``), and
    the loss is the sum of the two directions. The normalisation constants ``Z`` (one per direction, buffers ``z_s`` for the
    student-anchor direction and ``z_t`` for the teacher-anchor direction, ``-1`` while unset) are
    estimated once, on the first training batch, as ``N * mean(exp(s))`` over all ``B x (K+1)`` scores,
    exactly as the reference does, then kept fixed (they are buffers, so a resumed run is exact).

    ``objective='infonce'`` (the InfoNCE variant of the paper's ablation, as in CMC's ``NCESoftmaxLoss``):
    per direction the softmax cross-entropy of the scores ``s`` (``B x (K+1)``) with target class 0 (the
    positive), averaged over the batch; the loss is the sum of the two directions. No ``Z`` is needed.

    After the loss is computed (and only in training mode), the rows at ``index`` are updated without
    gradient, ``memory[index] <- normalize(nce_m * memory[index] + (1 - nce_m) * e)``, for both banks.
    The scores use a detached copy of the memory, so the update does not disturb autograd. A row that
    appears twice in ``index`` is updated once, from its first occurrence.
    Under ``torch.distributed`` the batch's indices and embeddings are all-gathered before the update
    and the first-batch ``Z`` is averaged over ranks, so every rank keeps identical banks and constants.

    Defaults are RepDistiller's: ``feat_dim=128``, ``nce_k=16384``, ``nce_t=0.07``, ``nce_m=0.5``; the
    recipe weights the term by 0.8 (with KD 0.9 and CE 1.0 as the other terms). The bank is initialised
    uniformly in ``[-a, a]`` with ``a = 1 / sqrt(feat_dim / 3)`` (rows of norm ~1), as the reference.

    The teacher feature is detached (as in the reference): gradients reach the student feature and both
    embedding heads, never the teacher network.

    Departures from the reference: the NCE logs are evaluated in log space, ``log(P / (P + c + eps)) = u -
    softplus(u)`` and ``log(c / (P + c + eps)) = log(c / (c + eps)) - softplus(u)`` with ``u = log(P / (c +
    eps))`` (:class:`_NCELoss`) -- the reference's values, but finite when ``exp(s)`` would overflow; the
    whole loss, embedding heads included, runs in fp32 with autocast disabled; the memory is not updated in
    eval mode.

    Memory cost: the two banks hold ``2 * num_data * feat_dim`` values in ``memory_dtype`` on the loss's device
    (the training device) and in every checkpoint -- ImageNet's 1,281,167 samples x 128: 1.31 GB in float32,
    0.66 GB in float16 (``memory_dtype='float16'``: rows are stored in half precision, scores and updates are
    computed in float32; the stored unit vectors keep about 3 significant digits). Each step also gathers
    ``2 * B * (nce_k + 1) * feat_dim`` memory values (as float32), kept until the backward pass: 4.3 GB for
    B = 256 per process and nce_k = 16384, 0.54 GB for B = 32 (a global batch of 256 on 8 GPUs). Measured on the
    CPU at ImageNet's size: banks +1265 MiB resident (float32) / +639 MiB (float16), a step with B = 32 +543 MiB.

    Args:
        s_shapes, t_shapes: observed shapes (with batch dim) of the one student / teacher tap.
        num_data: number of training samples (rows of the banks; the distiller passes the train-set size).
        feat_dim: embedding size. nce_k: negatives per positive. nce_t: temperature.
        nce_m: momentum of the memory update. objective: ``'nce'`` (default, the reference) or ``'infonce'``.
        eps: added inside the NCE logs (``1e-7``, the reference's value; ``0`` gives the exact NCE).
        scoring: how the ``B x (K+1)`` scores are computed. ``'gather'`` copies the ``B x (K+1) x feat_dim``
            memory rows per anchor and multiplies them (the reference's way: at CIFAR scale two copies of
            ~537 MB a step, memory-bound); ``'full'`` multiplies the anchors with the whole bank (``B x N``)
            and gathers scores instead of rows; ``'auto'`` (default) takes ``'full'`` when ``N <=
            FULL_SCORING_RATIO (8) x (K+1)`` (CIFAR-100: 50,000 rows vs 16,385 columns), ``'gather'`` otherwise
            (ImageNet's 1.28 M rows). Same values up to float32 summation order (tested to 1e-5 relative);
            measured for one direction, forward + backward, batch 64, K 16384, N 50,000, one CPU thread:
            gather 518 ms, full 52 ms.
        memory_dtype: ``'float32'`` (default, the reference), ``'float16'`` or ``'bfloat16'``: how the banks'
            rows are stored.

    Forward:
        ``forward(student, teacher, index=..., contrast_idx=..., **extra)``: ``student`` ``B x ...``,
        ``teacher`` ``B x ...`` (one tensor, or a one-item list), ``index`` ``(B,)`` long sample indices
        into the train set, ``contrast_idx`` ``(B, nce_k+1)`` long memory rows, positive first (from
        :class:`~densekd.data.crd.CRDSampleDataset`). If ``contrast_idx`` is None, the positive is ``index``
        and ``nce_k`` negatives are drawn uniformly with replacement from all ``num_data`` rows (the
        reference's fallback; negatives may then hit the positive or same-class samples). Returns a scalar.
    """

    OBJECTIVES = ("nce", "infonce")
    rank_synchronised_buffers = ("memory_s", "memory_t", "z_s", "z_t")  # all-gathered updates, see above
    FULL_SCORING_RATIO = 8
    MEMORY_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

    def __init__(self, s_shapes: Sequence[torch.Size] | None = None, t_shapes: Sequence[torch.Size] | None = None,
                 num_data: int | None = None, feat_dim: int = 128, nce_k: int = 16384, nce_t: float = 0.07,
                 nce_m: float = 0.5, objective: str = "nce", eps: float = 1e-7, scoring: str = "auto",
                 memory_dtype: str = "float32"):
        super().__init__()
        if scoring not in ("auto", "full", "gather"):
            raise ValueError(f"CRD scoring must be 'auto', 'full' or 'gather', got {scoring!r}")
        self.scoring = scoring
        if s_shapes is None or t_shapes is None:
            raise ValueError("CRD needs s_shapes and t_shapes (the observed shapes of the tapped student/teacher "
                             "features, e.g. [torch.Size([B, 64])]) to build its embedding heads; the distiller "
                             "passes them, or give them when building CRD by hand")
        s_shapes, t_shapes = shape_list(s_shapes), shape_list(t_shapes)
        if len(s_shapes) != 1 or len(t_shapes) != 1:
            raise ValueError(f"CRD contrasts one feature per network but got {len(s_shapes)} student and "
                             f"{len(t_shapes)} teacher taps; tap a single tensor, e.g. student='feats[-1]', "
                             f"teacher='feats[-1]'")
        s_shape, t_shape = torch.Size(s_shapes[0]), torch.Size(t_shapes[0])
        if len(s_shape) < 2 or len(t_shape) < 2:
            raise ValueError(f"CRD tap shapes must include the batch dimension (B x D...); got student "
                             f"{tuple(s_shape)}, teacher {tuple(t_shape)}")
        if num_data is None:
            raise ValueError("CRD needs num_data (the number of training samples = rows of its memory bank); "
                             "the distiller passes the train-set size, or set num_data=len(train_set)")
        if int(num_data) < 2:
            raise ValueError(f"CRD num_data must be >= 2 (rows of the memory bank), got {num_data}")
        if int(nce_k) < 1:
            raise ValueError(f"CRD nce_k (number of negatives) must be >= 1, got {nce_k}")
        if not nce_t > 0:
            raise ValueError(f"CRD nce_t (temperature) must be > 0, got {nce_t}")
        if not 0.0 <= nce_m < 1.0:
            raise ValueError(f"CRD nce_m (memory momentum) must be in [0, 1), got {nce_m}")
        if objective not in self.OBJECTIVES:
            raise ValueError(f"CRD objective must be one of {self.OBJECTIVES}, got {objective!r}")
        if memory_dtype not in self.MEMORY_DTYPES:
            raise ValueError(f"CRD memory_dtype must be one of {tuple(self.MEMORY_DTYPES)}, got {memory_dtype!r}")

        self.s_dim = int(s_shape[1:].numel())
        self.t_dim = int(t_shape[1:].numel())
        self.num_data = int(num_data)
        self.feat_dim = int(feat_dim)
        self.nce_k = int(nce_k)
        self.nce_t = float(nce_t)
        self.nce_m = float(nce_m)
        self.objective = objective
        self.eps = float(eps)

        self.embed_s = LinearEmbed(self.s_dim, self.feat_dim)
        self.embed_t = LinearEmbed(self.t_dim, self.feat_dim)
        bound = 1.0 / math.sqrt(self.feat_dim / 3.0)
        dtype = self.MEMORY_DTYPES[memory_dtype]
        self.memory_dtype = memory_dtype
        self.register_buffer("memory_s", torch.rand(self.num_data, self.feat_dim).mul_(2 * bound).sub_(bound).to(dtype))
        self.register_buffer("memory_t", torch.rand(self.num_data, self.feat_dim).mul_(2 * bound).sub_(bound).to(dtype))
        self.register_buffer("z_s", torch.tensor(-1.0))
        self.register_buffer("z_t", torch.tensor(-1.0))
        self._z_known: set[str] = set()  # the Z buffers known to be estimated (no read-back needed)
        self._device_range_checks = 0  # index range checks done on an accelerator

    def extra_repr(self) -> str:
        return (f"num_data={self.num_data}, feat_dim={self.feat_dim}, nce_k={self.nce_k}, nce_t={self.nce_t}, "
                f"nce_m={self.nce_m}, objective={self.objective!r}, memory_dtype={self.memory_dtype!r}")

    def memory_bytes(self) -> int:
        """Bytes held by the two memory banks."""
        return sum(b.numel() * b.element_size() for b in (self.memory_s, self.memory_t))

    # -- input checks ---------------------------------------------------------
    def _feature(self, x: Any, who: str, dim: int) -> torch.Tensor:
        xs = as_list(x)
        if len(xs) != 1:
            raise ValueError(f"CRD takes one {who} tensor, got a list of {len(xs)}; tap a single tensor "
                             f"(e.g. {who}='feats[-1]')")
        f = xs[0]
        if not torch.is_tensor(f) or f.dim() < 2:
            raise ValueError(f"CRD {who} feature must be a tensor B x D (or B x C x H x W, flattened); got "
                             f"{type(f).__name__ if not torch.is_tensor(f) else tuple(f.shape)}")
        if int(f.shape[1:].numel()) != dim:
            raise ValueError(f"CRD {who} feature has shape {tuple(f.shape)} ({int(f.shape[1:].numel())} values per "
                             f"sample) but the embedding head was built for {dim}; the tap must match the shape "
                             f"observed when the loss was built")
        return f

    def _indices(self, index: Any, contrast_idx: Any, batch: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if index is None:
            raise ValueError("CRD needs the batch's sample indices (index=..., shape (B,)): wrap the training set "
                             "in CRDSampleDataset (type='CRDSampleDataset'), which adds 'index' and 'contrast_idx'")
        index = torch.as_tensor(index)
        if index.dtype.is_floating_point or index.dtype == torch.bool or index.is_complex():
            raise ValueError(f"CRD index must be an integer tensor, got dtype {index.dtype}")
        if tuple(index.shape) != (batch,):
            raise ValueError(f"CRD index must have shape (B,) = ({batch},), got {tuple(index.shape)}")
        index = index.to(device=device, dtype=torch.long)
        if contrast_idx is not None:
            contrast_idx = torch.as_tensor(contrast_idx)
            if contrast_idx.dtype.is_floating_point or contrast_idx.dtype == torch.bool or contrast_idx.is_complex():
                raise ValueError(f"CRD contrast_idx must be an integer tensor, got dtype {contrast_idx.dtype}")
            if contrast_idx.dim() != 2 or contrast_idx.shape[0] != batch:
                raise ValueError(f"CRD contrast_idx must have shape (B, nce_k+1) = ({batch}, {self.nce_k + 1}), "
                                 f"got {tuple(contrast_idx.shape)}")
            if contrast_idx.shape[1] != self.nce_k + 1:
                raise ValueError(f"CRD contrast_idx has {contrast_idx.shape[1]} columns but the loss has "
                                 f"nce_k={self.nce_k} (expects nce_k+1 = {self.nce_k + 1}: positive first, then the "
                                 f"negatives); set the same nce_k on CRDSampleDataset and on the CRD loss")
            contrast_idx = contrast_idx.to(device=device, dtype=torch.long)
            bad = ((index < 0) | (index >= self.num_data)).any() | \
                ((contrast_idx < 0) | (contrast_idx >= self.num_data)).any()
        else:
            bad = ((index < 0) | (index >= self.num_data)).any()
        # reading the check back waits for the device: on an accelerator only the first calls check (a wrong
        # num_data shows at once); later out-of-range rows still fail in the device's own indexing
        if index.device.type != "cpu":
            self._device_range_checks += 1
            if self._device_range_checks > DEVICE_RANGE_CHECKS:
                return index, contrast_idx
        if bool(bad):
            raise ValueError(f"CRD index/contrast_idx values must lie in [0, num_data={self.num_data}); got "
                             f"index range [{int(index.min())}, {int(index.max())}]"
                             + ("" if contrast_idx is None else
                                f", contrast_idx range [{int(contrast_idx.min())}, {int(contrast_idx.max())}]")
                             + "; num_data must be the size of the (wrapped) training set")
        return index, contrast_idx

    def _load_from_state_dict(self, *args, **kwargs):
        self._z_known.clear()  # the loaded Z may be unset: look again
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, *args, **kwargs):
        self._z_known.clear()
        return super()._apply(fn, *args, **kwargs)

    # -- pieces -----------------------------------------------------------------
    def _estimate_z(self, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``Z`` for one direction: the stored one, or (first batch) ``N * mean(exp(scores))``."""
        # Z is fixed once estimated: remember that on the host, so later steps read nothing back from the device
        known, name = self._z_known, "z_s" if z is self.z_s else "z_t"
        if name in known:
            return z.detach()
        if z.item() > 0:
            known.add(name)
            return z.detach()
        with torch.no_grad():
            est = scores.detach().exp().mean() * self.num_data
            world = _distributed_world()
            if world > 1:
                dist.all_reduce(est)
                est = est / world
            if self.training:
                z.fill_(est.item())
                known.add(name)
        return est

    def _nce(self, scores: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """RepDistiller's ``ContrastLoss`` on ``scores`` (``B x (K+1)``, already divided by ``nce_t``); see
        :class:`_NCELoss` for how it is evaluated."""
        c = self.nce_k / self.num_data              # noise term K * Pn, Pn = 1 / N
        log_c_eps = math.log(c + self.eps)
        shift = torch.log(z).to(scores.dtype) + log_c_eps  # u = s - shift = log(P / (c + eps))
        return _NCELoss.apply(scores, shift, self.nce_k * (math.log(c) - log_c_eps))

    def _full_scoring(self, columns: int) -> bool:
        if self.scoring == "auto":
            return self.num_data <= self.FULL_SCORING_RATIO * columns
        return self.scoring == "full"

    @staticmethod
    def _bank_scores(bank: torch.Tensor, anchor: torch.Tensor, contrast_idx: torch.Tensor, full: bool
                     ) -> torch.Tensor:
        """``anchor`` (B x D) dotted with the bank rows ``contrast_idx`` (B x (K+1)) -> B x (K+1).

        ``full``: one product with the whole bank, then a gather of the scores (compute-bound; reads the bank
        once). Otherwise the rows are gathered (B x (K+1) x D, memory-bound) and multiplied per anchor. Same
        values up to float32 summation order; the bank gets no gradient either way."""
        bank = bank.detach()
        if full:  # a float32 copy: the product keeps the bank for backward, and the memory update follows in place
            return (anchor @ bank.to(torch.float32, copy=True).t()).gather(1, contrast_idx)
        b, k1 = contrast_idx.shape
        rows = bank.index_select(0, contrast_idx.reshape(-1)).view(b, k1, bank.shape[1]).float()
        return torch.bmm(rows, anchor.unsqueeze(2)).squeeze(2)

    @torch.no_grad()
    def _update_memory(self, index: torch.Tensor, e_s: torch.Tensor, e_t: torch.Tensor) -> None:
        if _distributed_world() > 1:
            index, e_s, e_t = _all_gather_rows(index), _all_gather_rows(e_s), _all_gather_rows(e_t)
        # A row listed twice (samplers with replacement, DistributedSampler padding) takes its first
        # occurrence, so the update is deterministic (index_copy_ with duplicates is not on CUDA).
        uniq, inverse = torch.unique(index, return_inverse=True)
        if uniq.numel() < index.numel():
            positions = torch.arange(index.numel(), device=index.device)
            first = torch.full_like(uniq, index.numel()).scatter_reduce_(0, inverse, positions, reduce="amin")
            index, e_s, e_t = index[first], e_s[first], e_t[first]
        for bank, e in ((self.memory_s, e_s), (self.memory_t, e_t)):
            rows = bank.index_select(0, index).float().mul_(self.nce_m).add_(e.float(), alpha=1.0 - self.nce_m)
            bank.index_copy_(0, index, F.normalize(rows, dim=1).to(bank.dtype))

    # -- forward ----------------------------------------------------------------
    def forward(self, student: Any, teacher: Any, index: Any = None, contrast_idx: Any = None,
                **extra: Any) -> torch.Tensor:
        f_s = self._feature(student, "student", self.s_dim)
        f_t = self._feature(teacher, "teacher", self.t_dim)
        batch = f_s.shape[0]
        if f_t.shape[0] != batch:
            raise ValueError(f"CRD student and teacher batch sizes differ: {tuple(f_s.shape)} vs {tuple(f_t.shape)}")
        device = self.memory_s.device
        index, contrast_idx = self._indices(index, contrast_idx, batch, device)
        if contrast_idx is None:  # reference fallback: uniform draws over the whole bank, positive first
            contrast_idx = torch.randint(0, self.num_data, (batch, self.nce_k + 1), device=device)
            contrast_idx[:, 0] = index

        autocast_device = device.type if device.type in ("cuda", "cpu") else "cpu"
        with torch.autocast(device_type=autocast_device, enabled=False):
            e_s = self.embed_s(f_s.to(device=device, dtype=torch.float32))
            e_t = self.embed_t(f_t.detach().to(device=device, dtype=torch.float32))
            full = self._full_scoring(contrast_idx.shape[1])
            scores_s = self._bank_scores(self.memory_t, e_s, contrast_idx, full) / self.nce_t  # student anchor
            scores_t = self._bank_scores(self.memory_s, e_t, contrast_idx, full) / self.nce_t  # teacher anchor
            if self.objective == "nce":
                z_s = self._estimate_z(scores_s, self.z_s)
                z_t = self._estimate_z(scores_t, self.z_t)
                loss = self._nce(scores_s, z_s) + self._nce(scores_t, z_t)
            else:
                target = torch.zeros(batch, dtype=torch.long, device=device)
                loss = F.cross_entropy(scores_s, target) + F.cross_entropy(scores_t, target)

        if self.training:
            self._update_memory(index, e_s.detach(), e_t.detach())
        return loss
