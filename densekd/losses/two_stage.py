"""Two-stage feature distillation: FT, AB, FSP (each an :class:`~densekd.losses.base.InitStage` loss).

Same loss contract as :mod:`densekd.losses.features`. Each method has an initialisation stage before the
main schedule (``init_loss``, ``init_trains_student``, ``init_parameters()``), which the distillation
strategy runs as its ``'init'`` phase. RepDistiller's init stage (``helper/pretrain.py``) runs
``init_epochs=30`` epochs of SGD (momentum 0.9, weight decay 5e-4, lr = the main learning rate 0.05, except
FT with ResNet/WRN students: 0.01) with the student and teacher in eval mode and only the init modules in
train mode. Published weights: FT 200, AB 1 (init stage), FSP 50 (init stage).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densekd.losses._utils import as_list, check_channels, parameters_of, pool_to_common, require_shape_pair, tap_lists
from densekd.losses.base import InitStage, SeparateParams
from densekd.nn.connectors import ConvReg, Paraphraser, Translator
from densekd.registry import LOSSES

__all__ = ["FT", "AB", "FSP"]


# ----------------------------------------------------------------------------------------------------------
# FT
# ----------------------------------------------------------------------------------------------------------
@LOSSES.register()
class FT(InitStage, SeparateParams, nn.Module):
    """Factor transfer (Kim et al., "Paraphrasing Complex Network: Network Compression via Factor Transfer",
    NeurIPS 2018).

    A :class:`Paraphraser` (conv auto-encoder, factor rate 0.5) is first trained on the teacher map to
    reconstruct it (``init_loss = mean((rec(T) - T)^2)``, the init stage; ``init_trains_student=False``:
    only ``init_parameters()`` = the paraphraser are optimised). Then a :class:`Translator` on the student
    predicts the teacher factor: with ``phi(F) = normalize(vec(mean_c F_c^p1))`` (``B x HW``),
    ``loss = sum_l mean |phi(translator(S)) - phi(paraphraser.encode(T))|^p2``. If the spatial sizes
    differ the larger factor is adaptive-average-pooled to the smaller.

    Shapes: student ``B x Cs x H x W``, teacher ``B x Ct x H' x W'`` (or lists of them; one module pair per
    tap). Defaults (RepDistiller ``FactorTransfer``, ``Paraphraser``, ``Translator``): ``rate=0.5``,
    ``p1=2``, ``p2=1``, tap ``feats[-2]``, weight 200; init stage 30 epochs, SGD lr 0.01 for ResNet/WRN
    students (else the main lr), MSE reconstruction. After the init stage the paraphraser is frozen: the
    teacher factor is computed without gradient and ``separate_parameters()`` returns the paraphraser so
    that the trainer leaves it out of the student's optimiser.

    Departure from the paper (follows RepDistiller): the paper compares the L2-normalised factor tensors
    directly; the reference first reduces them to an attention-like map ``mean_c F_c^2`` and normalises that.
    ``|.|^p2`` is used for ``p2 != 1`` (same as the reference for even ``p2``).
    """

    init_trains_student = False

    def __init__(self, s_shapes=None, t_shapes=None, rate: float = 0.5, p1: float = 2.0, p2: float = 1.0):
        super().__init__()
        s, t = require_shape_pair(s_shapes, t_shapes, "FT")
        self.paraphrasers = nn.ModuleList(Paraphraser(b[1], rate=rate) for b in t)
        self.translators = nn.ModuleList(Translator(a[1], para.out_channels)
                                         for a, para in zip(s, self.paraphrasers))
        self._s_channels = [a[1] for a in s]
        self._t_channels = [b[1] for b in t]
        self.p1, self.p2 = p1, p2

    def _factor(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(f.pow(self.p1).mean(1).flatten(1), dim=1)

    def init_loss(self, student, teacher, **extra) -> torch.Tensor:
        """Paraphraser reconstruction loss on the teacher maps (the student is ignored)."""
        t_list = [t.detach() for t in as_list(teacher)]
        if len(t_list) != len(self.paraphrasers):
            raise ValueError(f"FT was built for {len(self.paraphrasers)} layer(s) but got {len(t_list)} "
                             f"teacher tensors; tap the same layers as in the probe forward")
        loss = 0.0
        for i, (t, para) in enumerate(zip(t_list, self.paraphrasers)):
            check_channels("FT", i, t, self._t_channels[i], "teacher")
            _, rec = para(t)
            loss = loss + F.mse_loss(rec, t)
        return loss

    def init_parameters(self) -> list[nn.Parameter]:
        return parameters_of(self.paraphrasers)

    def separate_parameters(self) -> list[nn.Parameter]:
        return parameters_of(self.paraphrasers)

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "FT", dims=4, expected=len(self.translators))
        loss = 0.0
        for i, (s, t) in enumerate(zip(s_list, t_list)):
            check_channels("FT", i, s, self._s_channels[i], "student")
            check_channels("FT", i, t, self._t_channels[i], "teacher")
            factor_s = self.translators[i](s)
            with torch.no_grad():
                factor_t = self.paraphrasers[i].encode(t)
            factor_s, factor_t = pool_to_common(factor_s, factor_t)
            diff = self._factor(factor_s) - self._factor(factor_t)
            loss = loss + (diff.abs() if self.p2 == 1 else diff.abs().pow(self.p2)).mean()
        return loss


# ----------------------------------------------------------------------------------------------------------
# AB
# ----------------------------------------------------------------------------------------------------------
@LOSSES.register()
class AB(InitStage, nn.Module):
    """Activation-boundary distillation (Heo et al., "Knowledge Transfer via Distillation of Activation
    Boundaries Formed by Hidden Neurons", AAAI 2019).

    Uses PRE-ReLU maps of both networks (tap ``preacts[1:-1]``). A connector per layer maps the student
    map to the teacher's shape (identity when shapes agree, else :class:`ConvReg` without ReLU, as
    RepDistiller's ``Connector``). With ``s`` the connected student and ``t`` the teacher pre-activation,
    the alternative (hinge-squared) loss per layer is

        ``L_l = sum (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0]``

    and ``loss = sum_l w_l * L_l / B * 3 / 1000`` with ``w_l = 2^(l - L + 1)`` (last layer 1, halving
    towards the input). Shapes: ``B x C x H x W`` (lists, one per tap).

    Defaults (RepDistiller ``ABLoss`` + ``Connector``): ``margin=1.0``. Two-stage:
    ``init_trains_student=True`` -- the init stage (30 epochs) trains the student's feature layers and
    ``init_parameters()`` (the connectors) with ``init_loss`` alone (RepDistiller weight 1). RepDistiller's
    main stage then adds NOTHING for AB (``loss_kd = 0``; the connectors are unused): to reproduce it, use
    this term only in the init stage. ``forward`` computes the same value as ``init_loss``, so the term can
    also be kept in the main stage (as in the AB paper's variants) if wanted.
    """

    init_trains_student = True

    def __init__(self, s_shapes=None, t_shapes=None, margin: float = 1.0):
        super().__init__()
        s, t = require_shape_pair(s_shapes, t_shapes, "AB")
        self.connectors = nn.ModuleList(
            nn.Identity() if tuple(a[1:]) == tuple(b[1:]) else ConvReg(a, b, relu=False) for a, b in zip(s, t))
        n = len(s)
        self.weights = [2.0 ** (i - n + 1) for i in range(n)]
        self.margin = margin

    def init_loss(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "AB", dims=4, expected=len(self.connectors))
        m = self.margin
        batch = s_list[0].shape[0]
        loss = 0.0
        for i, (s, t, conn, w) in enumerate(zip(s_list, t_list, self.connectors, self.weights)):
            s = conn(s)
            if s.shape != t.shape:
                raise ValueError(f"AB: layer {i} connected student map {tuple(s.shape)} does not match the "
                                 f"teacher map {tuple(t.shape)}; tap the layers seen in the probe forward")
            neg = ((s > -m) & (t <= 0)).to(s.dtype)
            pos = ((s <= m) & (t > 0)).to(s.dtype)
            layer = ((s + m).pow(2) * neg + (s - m).pow(2) * pos).sum()
            loss = loss + w * layer / batch / 1000 * 3
        return loss

    def init_parameters(self) -> list[nn.Parameter]:
        return parameters_of(self.connectors)

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        return self.init_loss(student, teacher, **extra)


# ----------------------------------------------------------------------------------------------------------
# FSP
# ----------------------------------------------------------------------------------------------------------
def _fsp_matrices(feats: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for bottom, top in zip(feats[:-1], feats[1:]):
        bottom, top = pool_to_common(bottom, top)
        hw = bottom.shape[2] * bottom.shape[3]
        out.append(torch.einsum("bihw,bjhw->bij", bottom, top) / hw)
    return out


@LOSSES.register()
class FSP(InitStage, nn.Module):
    """Flow of solution procedure (Yim et al., "A Gift from Knowledge Distillation: Fast Optimization,
    Network Minimization and Transfer Learning", CVPR 2017).

    For consecutive taps ``F1`` (``B x C1 x H x W``) and ``F2`` (``B x C2 x H' x W'``), the larger map is
    adaptive-average-pooled to the smaller size and ``G_ij = mean_{hw} F1_i F2_j`` (``B x C1 x C2``).
    ``loss = sum_pairs mean (G_S - G_T)^2``. Student and teacher must have the SAME channel count at every
    tap (ValueError otherwise); at least 2 taps.

    Defaults (RepDistiller ``FSP``): taps ``feats[:-1]``, weight 50. RepDistiller uses FSP ONLY as an init
    stage: ``init_trains_student=True`` (30 epochs training the student's feature layers with this loss
    alone; ``init_parameters()`` is empty) and adds nothing in the main stage (``loss_kd = 0``). ``forward``
    equals ``init_loss``. Departure from the paper: the mean (not the sum) of squared differences, no
    per-pair weights.
    """

    init_trains_student = True

    def __init__(self, s_shapes=None, t_shapes=None):
        super().__init__()
        self._s_channels = self._t_channels = None
        if s_shapes is not None and t_shapes is not None:
            s, t = require_shape_pair(s_shapes, t_shapes, "FSP")
            self._check([a[1] for a in s], [b[1] for b in t])

    @staticmethod
    def _check(s_channels: list[int], t_channels: list[int]) -> None:
        if len(s_channels) < 2:
            raise ValueError(f"FSP needs at least 2 tapped layers (it relates consecutive layers), got "
                             f"{len(s_channels)}; tap e.g. 'feats[:-1]'")
        if list(s_channels) != list(t_channels):
            raise ValueError(f"FSP needs equal student and teacher channel counts at every tap, got student "
                             f"{list(s_channels)} vs teacher {list(t_channels)}; pick a teacher/student pair of "
                             f"the same widths or use another loss (e.g. AT, NST)")

    def init_loss(self, student, teacher, **extra) -> torch.Tensor:
        s_list, t_list = tap_lists(student, teacher, "FSP", dims=4, min_layers=2)
        self._check([s.shape[1] for s in s_list], [t.shape[1] for t in t_list])
        loss = 0.0
        for gs, gt in zip(_fsp_matrices(s_list), _fsp_matrices(t_list)):
            loss = loss + (gs - gt).pow(2).mean()
        return loss

    def init_parameters(self) -> list[nn.Parameter]:
        return []

    def forward(self, student, teacher, **extra) -> torch.Tensor:
        return self.init_loss(student, teacher, **extra)
