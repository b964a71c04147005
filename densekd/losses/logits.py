"""Logit distillation losses: KD, DKD, DIST, MLKD (with ViewCE, the cross-entropy on a second view), the teacher-free
virtual teacher (Tf-KD) and class-wise self-KD (CS-KD).

All losses here act on classification logits ``B x C``. Dense ``B x C x H x W``
logits belong to ``PixelWiseKD`` and ``DenseDIST`` (densekd/losses/dense.py).

KD, DKD, DIST and MLKD (and the dense PixelWiseKD / DenseDIST) take ``logit_std=True`` for the logit
standardisation of Sun et al., CVPR 2024 (:func:`~densekd.losses._utils.standardize_logits`, one helper for all).

Each ``forward(student, teacher, **extra)`` returns the *un-weighted* loss,
normalised as the reference implementation does; the distiller multiplies by
the term's ``weight``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densekd.losses._utils import epoch_warmup, single_tensor, standardize_logits
from densekd.losses.base import ExtraViews, SelfTeacher, TeacherFree
from densekd.registry import LOSSES

__all__ = ["KD", "DKD", "DIST", "LabelSmoothingKD", "TfKD", "CSKD", "MLKD", "ViewCE", "dist_relations",
           "mlkd_batch_term", "mlkd_class_term", "mlkd_mask_fractions"]


# --------------------------------------------------------------------------- helpers
def _check_logits(s: torch.Tensor, t: torch.Tensor | None, name: str, dense_hint: str) -> None:
    if s.dim() != 2:
        raise ValueError(f"{name} expects classification logits of shape B x C; got student shape "
                         f"{tuple(s.shape)}. {dense_hint}")
    if t is not None and t.shape != s.shape:
        raise ValueError(f"{name}: student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} "
                         f"differ; both must be B x C with the same number of classes")


def _check_target(target: Any, logits: torch.Tensor, name: str) -> torch.Tensor:
    """Class-index target of shape ``B`` (or ``B x 1``) with values in ``[0, C)``."""
    if target is None:
        raise ValueError(f"{name} needs the class labels: pass target=<LongTensor of shape B> "
                         f"(the distiller forwards the batch's 'target' in **extra)")
    if not isinstance(target, torch.Tensor):
        target = torch.as_tensor(target, device=logits.device)
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"{name} needs integer class indices as target; got dtype {target.dtype} with shape "
                         f"{tuple(target.shape)} (soft / one-hot / mixed targets are not supported)")
    b, c = logits.shape
    if target.dim() == 2 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != (b,):
        raise ValueError(f"{name}: target shape {tuple(target.shape)} does not match the logits batch "
                         f"{tuple(logits.shape)}; expected shape ({b},)")
    if b and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(f"{name}: target values must lie in [0, {c}); got min {int(target.min())}, "
                         f"max {int(target.max())} (ignore labels are not supported for classification KD)")
    return target.long()


def _check_temperature(T: float, name: str) -> float:
    if not T > 0:
        raise ValueError(f"{name}: temperature T must be > 0, got {T}")
    return float(T)


# --------------------------------------------------------------------------- KD
@LOSSES.register()
class KD(nn.Module):
    """Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

    ``loss = KL(softmax(t / T) || softmax(s / T)) * T^2`` summed over classes and
    averaged over the batch (``batchmean``), exactly RepDistiller's ``DistillKL``.

    ``logit_std=True`` (Sun et al., CVPR 2024, "Logit Standardization in Knowledge Distillation"): student
    and teacher logits are each z-scored over the classes, ``(z - mean) / (std + 1e-7)`` (unbiased std, as the
    authors' release), before the division by ``T``; the rest is unchanged (``T^2`` factor included, as their
    ``kd_loss``). Their CIFAR-100 command for KD + standardisation is ``--logit-stand --base-temp 2
    --kd-weight 9``: ``T=2``, term weight 9 (configs/_base_/cifar100/methods/kd_ls.py).

    Shapes: ``student``, ``teacher``: ``B x C`` logits (one tap each). Returns a scalar.
    Defaults: ``T=4`` (RepDistiller CIFAR-100 recipe; term weight 0.9 there, CE weight 0.1), ``logit_std=False``.
    Dense ``B x C x H x W`` logits are rejected: use ``PixelWiseKD``.
    """

    def __init__(self, T: float = 4.0, logit_std: bool = False):
        super().__init__()
        self.T = _check_temperature(T, "KD")
        self.logit_std = bool(logit_std)

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "KD", "student", "logits tensor")
        t = single_tensor(teacher, "KD", "teacher", "logits tensor")
        _check_logits(s, t, "KD", "For dense B x C x H x W logits use the 'PixelWiseKD' loss instead.")
        t = t.detach()
        if self.logit_std:
            s, t = standardize_logits(s), standardize_logits(t)
        log_p_s = F.log_softmax(s / self.T, dim=1)
        p_t = F.softmax(t / self.T, dim=1)
        return F.kl_div(log_p_s, p_t, reduction="batchmean") * (self.T ** 2)


# --------------------------------------------------------------------------- DKD
@LOSSES.register()
class DKD(nn.Module):
    """Zhao et al. CVPR 2022, "Decoupled Knowledge Distillation".

    ``loss = warm * (alpha * TCKD + beta * NCKD)`` with, at temperature ``T``:

    - TCKD: KL between the binary distributions ``[p_gt, 1 - p_gt]`` of teacher and
      student (target class vs. all others), ``* T^2 / B``;
    - NCKD: KL between the teacher and student distributions over the non-target
      classes only (softmax renormalised without the target class), ``* T^2 / B``;
    - ``warm = min((floor(epoch) + 1) / warmup, 1)`` when the trainer passes ``epoch``
      (float, fractional epochs counted from 0) in ``**extra``, else 1. This is
      mdistiller's ``min(epoch / warmup, 1)`` with its epoch counter, which starts at 1
      and is constant over an epoch: the first step of training has factor ``1 / warmup``,
      the whole first epoch too, and the factor reaches 1 in epoch ``warmup`` (1-based).
      ``warmup=0`` disables it.

    Normalisation follows mdistiller's ``dkd_loss`` (sum over classes, divide by
    the batch size, times ``T^2``; NCKD masks the target logit by subtracting
    1000 in the tempered space). Departure: the TCKD log-probabilities are computed
    with log-sum-exp instead of ``log(sum(softmax))`` — the same value, but finite
    when a probability underflows.

    ``logit_std=True``: the logits are z-scored first (as KD's option; the authors' ``dkd_loss`` standardises
    both inputs before the temperature and the target masks). Their CIFAR-100 command ``--logit-stand
    --base-temp 2 --kd-weight 9`` multiplies alpha and beta by 9 and sets ``T=2``: ``alpha=9, beta=72, T=2``
    (configs/_base_/cifar100/methods/dkd_ls.py).

    Shapes: ``student``, ``teacher``: ``B x C`` logits; ``target`` (from extra): ``B``
    integer class indices. Defaults (mdistiller CIFAR-100): ``alpha=1, beta=8, T=4,
    warmup=20, logit_std=False``; CE weight 1.0 and DKD term weight 1.0.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 8.0, T: float = 4.0, warmup: float = 20.0,
                 logit_std: bool = False):
        super().__init__()
        self.logit_std = bool(logit_std)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.T = _check_temperature(T, "DKD")
        if warmup < 0:
            raise ValueError(f"DKD: warmup must be >= 0 epochs, got {warmup}")
        self.warmup = float(warmup)

    def warmup_factor(self, epoch: float | None) -> float:
        return epoch_warmup(epoch, self.warmup)

    def forward(self, student: Any, teacher: Any, target: Any = None, epoch: float | None = None,
                **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "DKD", "student", "logits tensor")
        t = single_tensor(teacher, "DKD", "teacher", "logits tensor")
        _check_logits(s, t, "DKD", "DKD is defined for classification logits only.")
        t = t.detach()
        target = _check_target(target, s, "DKD")
        if s.shape[1] < 2:
            raise ValueError(f"DKD needs at least 2 classes; got logits of shape {tuple(s.shape)}")
        if self.logit_std:
            s, t = standardize_logits(s), standardize_logits(t)
        b = s.shape[0]
        T = self.T
        gt = F.one_hot(target, s.shape[1]).bool()

        # TCKD: binary (target, non-target) distributions
        log_p_s = F.log_softmax(s / T, dim=1)
        log_p_t = F.log_softmax(t / T, dim=1)
        neg_inf = torch.finfo(s.dtype).min

        def binary(log_p: torch.Tensor) -> torch.Tensor:
            log_gt = log_p.masked_fill(~gt, neg_inf).logsumexp(dim=1)
            log_other = log_p.masked_fill(gt, neg_inf).logsumexp(dim=1)
            return torch.stack([log_gt, log_other], dim=1)

        log_b_s, log_b_t = binary(log_p_s), binary(log_p_t)
        tckd = F.kl_div(log_b_s, log_b_t, reduction="sum", log_target=True) * T ** 2 / b

        # NCKD: distributions over the non-target classes (target logit pushed down by 1000)
        shift = 1000.0 * gt.to(s.dtype)
        log_q_s = F.log_softmax(s / T - shift, dim=1)
        q_t = F.softmax(t / T - shift, dim=1)
        nckd = F.kl_div(log_q_s, q_t, reduction="sum") * T ** 2 / b

        return self.warmup_factor(epoch) * (self.alpha * tckd + self.beta * nckd)


# --------------------------------------------------------------------------- DIST
def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (``N x K`` -> ``N``): the cosine
    similarity of the row-centred vectors, ``<a', b'> / (||a'|| ||b'|| + eps)`` (the authors' form)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_relations(p_s: torch.Tensor, p_t: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST's two relation losses on probabilities ``N x C`` (rows = instances, columns = classes):
    ``inter = 1 - mean_n pearson(p_s[n, :], p_t[n, :])`` (over classes, per instance) and
    ``intra = 1 - mean_c pearson(p_s[:, c], p_t[:, c])`` (over instances, per class)."""
    inter = 1.0 - _pearson_rows(p_s, p_t, eps).mean()
    intra = 1.0 - _pearson_rows(p_s.t(), p_t.t(), eps).mean()
    return inter, intra


@LOSSES.register()
class DIST(nn.Module):
    """Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher" (DIST).

    With ``Y_s = softmax(z_s / T)`` and ``Y_t = softmax(z_t / T)`` (``B x C``) and the Pearson correlation
    ``rho(u, v) = <u - mean(u), v - mean(v)> / (||u - mean(u)|| ||v - mean(v)|| + 1e-8)``:

    - inter-class relation ``L_inter = 1 - (1/B) sum_b rho(Y_s[b, :], Y_t[b, :])`` (each sample's class
      distribution, over the C classes);
    - intra-class relation ``L_intra = 1 - (1/C) sum_c rho(Y_s[:, c], Y_t[:, c])`` (each class's scores
      over the B samples of the batch);
    - ``loss = beta * T^2 * L_inter + gamma * T^2 * L_intra``.

    This is the authors' ``DIST`` module (hunto/DIST_KD, ``eps=1e-8`` added to the product of the norms), no
    departure. ``logit_std=True`` z-scores the logits first (Sun et al., CVPR 2024; their release applies it
    to KD, DKD and MLKD only, so DIST + standardisation is an extension here). The intra-class term needs
    ``B >= 2``; the loss depends on the batch composition (per process under DDP, as the reference).

    Shapes: ``student``, ``teacher``: ``B x C`` logits. Dense logits: :class:`~densekd.losses.dense.DenseDIST`.
    Defaults: ``beta=1, gamma=1, T=1`` (the authors' class defaults, their ImageNet setting, term weight 1
    with CE weight 1). For CIFAR-100 configs/_base_/cifar100/methods/dist.py uses ``beta=2, gamma=2, T=4``,
    the paper's CIFAR-100 setting as we recall it (the authors publish no CIFAR code, so this is unverified).
    """

    def __init__(self, beta: float = 1.0, gamma: float = 1.0, T: float = 1.0, logit_std: bool = False,
                 eps: float = 1e-8):
        super().__init__()
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.T = _check_temperature(T, "DIST")
        self.logit_std = bool(logit_std)
        self.eps = float(eps)

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "DIST", "student", "logits tensor")
        t = single_tensor(teacher, "DIST", "teacher", "logits tensor")
        _check_logits(s, t, "DIST", "For dense B x C x H x W logits use the 'DenseDIST' loss instead.")
        if s.shape[0] < 2 or s.shape[1] < 2:
            raise ValueError(f"DIST needs at least 2 samples (intra-class relation over the batch) and 2 classes; "
                             f"got logits of shape {tuple(s.shape)}")
        t = t.detach()
        if self.logit_std:
            s, t = standardize_logits(s), standardize_logits(t)
        inter, intra = dist_relations(F.softmax(s / self.T, dim=1), F.softmax(t / self.T, dim=1), self.eps)
        return self.T ** 2 * (self.beta * inter + self.gamma * intra)


# --------------------------------------------------------------------------- Tf-KD
@LOSSES.register()
class LabelSmoothingKD(TeacherFree, nn.Module):
    """Tf-KD_reg, the manually designed "virtual teacher" of Yuan et al. CVPR 2020,
    "Revisiting Knowledge Distillation via Label Smoothing Regularization".

    The virtual teacher puts ``correct_prob`` on the true class and
    ``(1 - correct_prob) / (C - 1)`` on every other class; the loss is

        ``multiplier * KLDiv_mean(log_softmax(s), softmax(p_virtual / T))``

    where ``KLDiv_mean`` averages over all ``B * C`` elements (PyTorch's old
    ``nn.KLDivLoss()`` default). This follows the authors' code
    (``my_loss_function.loss_kd_regularization``), which departs from the paper's
    equation in two ways kept here for reproduction: the temperature divides the
    virtual teacher's *probabilities* before a softmax, and the student logits are
    not tempered.

    The teacher network is not used: ``teacher`` may be ``None`` or anything and is
    ignored; in a config the term needs no ``teacher`` section (a :class:`~densekd.losses.base.TeacherFree` loss,
    see configs/cifar100/teacher_free/resnet8x4_tfkd.py). The CE term ``(1 - reg_alpha) * CE``
    is the task loss (``task_weight = 1 - reg_alpha``); give this term ``weight=reg_alpha``.

    Shapes: ``student``: ``B x C`` logits; ``target`` (from extra): ``B`` class indices.
    Defaults (authors' CIFAR-100 ResNet-18 params.json): ``T=20``, ``correct_prob=0.99``,
    ``multiplier=100``, term weight ``reg_alpha=0.1`` (CE weight 0.9).
    Also registered as ``'TfKD'``.
    """


    def __init__(self, T: float = 20.0, correct_prob: float = 0.99, multiplier: float = 100.0):
        super().__init__()
        self.T = _check_temperature(T, "LabelSmoothingKD")
        if not 0.0 < correct_prob <= 1.0:
            raise ValueError(f"LabelSmoothingKD: correct_prob must be in (0, 1], got {correct_prob}")
        self.correct_prob = float(correct_prob)
        self.multiplier = float(multiplier)

    def virtual_teacher(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The hand-designed teacher distribution ``p_virtual`` (``B x C``, rows sum to 1)."""
        b, c = logits.shape
        off = (1.0 - self.correct_prob) / (c - 1)
        p = torch.full((b, c), off, dtype=logits.dtype, device=logits.device)
        return p.scatter(1, target[:, None], self.correct_prob)

    def forward(self, student: Any, teacher: Any = None, target: Any = None, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "LabelSmoothingKD", "student", "logits tensor")
        _check_logits(s, None, "LabelSmoothingKD", "Tf-KD is defined for classification logits only.")
        if s.shape[1] < 2:
            raise ValueError(f"LabelSmoothingKD needs at least 2 classes; got logits {tuple(s.shape)}")
        target = _check_target(target, s, "LabelSmoothingKD")
        p_teacher = F.softmax(self.virtual_teacher(s, target) / self.T, dim=1)
        kl = F.kl_div(F.log_softmax(s, dim=1), p_teacher, reduction="sum") / s.numel()  # mean over B*C
        return kl * self.multiplier


TfKD = LabelSmoothingKD
LOSSES.register("TfKD")(LabelSmoothingKD)


# --------------------------------------------------------------------------- CS-KD
@LOSSES.register()
class CSKD(SelfTeacher, nn.Module):
    """Class-wise self-knowledge distillation (Yun et al., "Regularizing Class-wise Predictions via
    Self-knowledge Distillation", CVPR 2020).

    The student is its own teacher: its logits ``z'`` on another sample of the same class (computed without
    gradient, in the current train/eval mode) are the soft target for its logits ``z`` on the sample:

        ``loss = T^2 * sum_{b,c} q_bc (log q_bc - log p_bc) / B``,  ``q = softmax(z'/T)``, ``p = softmax(z/T)``

    (the authors' ``KDLoss``: KL summed, divided by the batch size). No teacher network: the distiller runs
    the student on ``batch['pair_image']``, which :class:`~densekd.data.pairs.ClassPairDataset` adds, and
    passes those logits as ``teacher``. The cross-entropy on the anchors is the task loss.

    Shapes: ``student``, ``teacher`` ``B x C`` logits. Defaults (authors' CIFAR-100 setting): ``T=4``, term
    weight ``lambda_cls = 1``; their batch of 128 is 64 anchors + 64 partners, i.e. ``batch_size=64`` here.
    """

    self_teacher_input = "pair_image"  # the distiller runs the student on this batch key for ``teacher``

    def __init__(self, T: float = 4.0):
        super().__init__()
        self.T = _check_temperature(T, "CSKD")

    def forward(self, student: Any, teacher: Any = None, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "CSKD", "student", "logits tensor")
        if teacher is None:
            raise ValueError("CSKD needs the student's logits on class-mates as `teacher`; the distiller provides "
                             "them when the training set is wrapped in ClassPairDataset (batch key 'pair_image')")
        t = single_tensor(teacher, "CSKD", "teacher", "logits tensor")
        _check_logits(s, t, "CSKD", "CS-KD is defined for classification logits only.")
        q = F.softmax(t.detach() / self.T, dim=1)
        kl = F.kl_div(F.log_softmax(s / self.T, dim=1), q, reduction="sum")
        return kl * self.T ** 2 / s.shape[0]


# --------------------------------------------------------------------------------------------------------- MLKD
def _view_pair(views: Any, key: str, name: str) -> tuple[Any, Any]:
    if not isinstance(views, dict) or key not in views:
        have = sorted(views) if isinstance(views, dict) else "none"
        raise ValueError(f"{name} reads the networks' outputs on batch[{key!r}] (views={{key: (student, teacher)}}, "
                         f"passed by the distiller); got views for {have}")
    return views[key]


def _kd_terms(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """``T^2 * mean_b KL(softmax(t/T) || softmax(s/T))``."""
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T ** 2


def mlkd_batch_term(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """MLKD's batch-level alignment: ``||P_s P_s^T - P_t P_t^T||_F^2 / B`` for ``P = softmax(z / T)``
    (``B x C``; the ``B x B`` Gram matrices of the predictions)."""
    p_s, p_t = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)
    return (p_t @ p_t.t() - p_s @ p_s.t()).pow(2).sum() / s.shape[0]


def mlkd_class_term(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """MLKD's class-level alignment: ``||P_s^T P_s - P_t^T P_t||_F^2 / C`` (the ``C x C`` class correlation
    matrices of the predictions)."""
    p_s, p_t = F.softmax(s / T, dim=1), F.softmax(t / T, dim=1)
    return (p_t.t() @ p_t - p_s.t() @ p_s).pow(2).sum() / s.shape[1]


def mlkd_mask_fractions(t_weak: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The release's confidence masks, as the factors they amount to there: the fraction of samples whose
    teacher confidence ``max_c softmax(t)`` is at most its batch median, and the fraction of classes whose
    summed teacher probability ``sum_b softmax(t)`` is at most the median over classes (medians interpolated
    linearly, ``np.percentile(x, 50)``)."""
    p = F.softmax(t_weak, dim=1)
    conf = p.max(dim=1).values
    per_class = p.sum(dim=0)
    sample = (conf <= torch.quantile(conf, 0.5)).to(p.dtype).mean()
    cls = (per_class <= torch.quantile(per_class, 0.5)).to(p.dtype).mean()
    return sample, cls


@LOSSES.register()
class MLKD(ExtraViews, nn.Module):
    """Multi-level logit distillation (Jin, Wang & Lin, CVPR 2023, "Multi-Level Logit Distillation"), the
    arithmetic of the authors' release (``mdistiller/distillers/KD_ours.py``).

    Each image comes as a weak view (``batch['image']``, the usual crop + flip) and a strong view
    (``batch[view]``, default ``'image_strong'``: crop + flip + RandAugment + Cutout, from
    :class:`~densekd.data.multiview.StrongAugmentView`); the distiller runs student and teacher on both
    (:class:`~densekd.losses.base.ExtraViews`). With ``s_w, t_w`` the weak-view logits, ``s_s, t_s`` the
    strong-view ones, and for each temperature ``T`` of ``temperatures``:

    - instance level ``KD_T(s, t) = T^2 mean_b KL(softmax(t/T) || softmax(s/T))``;
    - batch level ``BC_T = ||P_s P_s^T - P_t P_t^T||_F^2 / B`` (``B x B`` Gram matrices, ``P = softmax(z/T)``);
    - class level ``CC_T = ||P_s^T P_s - P_t^T P_t||_F^2 / C`` (``C x C`` class correlations);

        ``loss = m sum_T KD_T(s_w, t_w) + sum_{T in head} KD_T(s_s, t_s) + sum_{T in tail} KD_T(s_w, t_w)
                 + c sum_T CC_T(s_w, t_w) + m sum_T BC_T(s_w, t_w)``

    where ``tail`` are the last ``weak_in_strong`` temperatures and ``head`` the others, ``m`` is the fraction
    of the batch whose weak-view teacher confidence (``max softmax(t_w)``) is at most the batch median and
    ``c`` the fraction of classes whose summed weak-view teacher probability is at most the median over classes
    (:func:`mlkd_mask_fractions`). The cross-entropy on the weak view is the task loss and the one on the strong
    view the :class:`ViewCE` term (both with the release's CE weight).

    What this reproduces of the release, stated exactly: (1) its confidence masks multiply *scalar* (batch-mean)
    losses (its per-sample ``reduce=False`` is commented out), so they act as the factors ``m`` and ``c``, not
    as per-sample masks (``confidence_mask=False`` sets ``m = c = 1``); (2) the last two terms of its
    strong-view KD sum (``T = 2`` and ``6``) are computed on the weak-view logits (``weak_in_strong=2``; 0 puts
    every strong-view term on the strong view); (3) it computes strong-view batch and class terms but does not
    add them to the loss, so they are not computed here. ``logit_std=True`` (MLKD + logit standardisation, Sun
    et al., CVPR 2024) z-scores the logits of the instance-level terms only, as that release's ``MLKD``; the
    masks and the batch and class terms use the raw logits there too.

    Shapes: ``student``, ``teacher``: weak-view ``B x C`` logits; ``views[view] = (student, teacher)``
    strong-view ``B x C`` logits. Computed in fp32. Defaults (release, CIFAR-100): ``temperatures = (4, 3, 5, 2,
    6)`` (its ``KD.TEMPERATURE = 4`` then 3, 5, 2, 6), term weight 0.9 and CE weight 0.1 on each view
    (mdistiller's ``KD.LOSS`` defaults, which its configs keep), SGD lr 0.025. With logit standardisation the
    release sets its base temperature to 2, so the list becomes ``(2, 3, 5, 2, 6)``, term weight 9.
    """

    extra_views = ("image_strong",)

    def __init__(self, temperatures=(4.0, 3.0, 5.0, 2.0, 6.0), view: str = "image_strong",
                 confidence_mask: bool = True, weak_in_strong: int = 2, logit_std: bool = False):
        super().__init__()
        self.temperatures = tuple(_check_temperature(float(T), "MLKD") for T in temperatures)
        if not self.temperatures:
            raise ValueError("MLKD: give at least one temperature")
        if not 0 <= int(weak_in_strong) <= len(self.temperatures):
            raise ValueError(f"MLKD: weak_in_strong must be in [0, {len(self.temperatures)}], got {weak_in_strong}")
        if not isinstance(view, str) or not view:
            raise ValueError(f"MLKD: view must be a batch key (e.g. 'image_strong'), got {view!r}")
        self.view = view
        self.extra_views = (view,)
        self.confidence_mask = bool(confidence_mask)
        self.weak_in_strong = int(weak_in_strong)
        self.logit_std = bool(logit_std)

    def forward(self, student: Any, teacher: Any, views: Any = None, **extra: Any) -> torch.Tensor:
        s_w = single_tensor(student, "MLKD", "student", "logits tensor").float()
        t_w = single_tensor(teacher, "MLKD", "teacher", "logits tensor").detach().float()
        s_view, t_view = _view_pair(views, self.view, "MLKD")
        s_s = single_tensor(s_view, "MLKD", "strong-view student", "logits tensor").float()
        t_s = single_tensor(t_view, "MLKD", "strong-view teacher", "logits tensor").detach().float()
        _check_logits(s_w, t_w, "MLKD", "MLKD is defined for classification logits only.")
        _check_logits(s_s, t_s, "MLKD", "MLKD is defined for classification logits only.")
        if s_s.shape != s_w.shape:
            raise ValueError(f"MLKD: weak-view logits {tuple(s_w.shape)} and strong-view logits {tuple(s_s.shape)} "
                             f"differ; both views must hold the same samples")
        if self.confidence_mask:
            m, c = mlkd_mask_fractions(t_w)
        else:
            m = c = torch.ones((), device=s_w.device)
        zs_w, zt_w, zs_s, zt_s = s_w, t_w, s_s, t_s
        if self.logit_std:
            zs_w, zt_w, zs_s, zt_s = (standardize_logits(z) for z in (s_w, t_w, s_s, t_s))
        n_head = len(self.temperatures) - self.weak_in_strong
        instance = m * sum(_kd_terms(zs_w, zt_w, T) for T in self.temperatures)
        instance = instance + sum(_kd_terms(zs_s, zt_s, T) if k < n_head else _kd_terms(zs_w, zt_w, T)
                                  for k, T in enumerate(self.temperatures))
        cls = c * sum(mlkd_class_term(s_w, t_w, T) for T in self.temperatures)
        batch = m * sum(mlkd_batch_term(s_w, t_w, T) for T in self.temperatures)
        return instance + cls + batch


@LOSSES.register()
class ViewCE(TeacherFree, ExtraViews, nn.Module):
    """Cross-entropy of the student's output on another view of the batch (``batch[view]``) with the labels:
    ``mean_b -log softmax(z_view)[b, y_b]``, as the classification task's loss on the main view.

    MLKD trains on both views with the same CE weight (its release: ``CE_WEIGHT * (CE(weak) + CE(strong))``);
    the weak-view CE is the task loss (``task_weight``), this term is the strong-view one (``weight`` = the same
    CE weight). No teacher network (:class:`~densekd.losses.base.TeacherFree`); the distiller runs the student on
    ``batch[view]`` once per step for all terms reading that view (:class:`~densekd.losses.base.ExtraViews`).

    Shapes: ``views[view][0]``: ``B x C`` logits; ``target``: ``B`` class indices. Defaults: ``view='image_strong'``,
    ``label_smoothing=0``.
    """

    extra_views = ("image_strong",)

    def __init__(self, view: str = "image_strong", label_smoothing: float = 0.0):
        super().__init__()
        if not isinstance(view, str) or not view:
            raise ValueError(f"ViewCE: view must be a batch key (e.g. 'image_strong'), got {view!r}")
        self.view = view
        self.extra_views = (view,)
        self.label_smoothing = float(label_smoothing)

    def forward(self, student: Any, teacher: Any = None, views: Any = None, target: Any = None,
                **extra: Any) -> torch.Tensor:
        s_view, _ = _view_pair(views, self.view, "ViewCE")
        s = single_tensor(s_view, "ViewCE", "student", "logits tensor")
        _check_logits(s, None, "ViewCE", "ViewCE is defined for classification logits only.")
        return F.cross_entropy(s, _check_target(target, s, "ViewCE"), label_smoothing=self.label_smoothing)
