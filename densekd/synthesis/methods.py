"""Synthesis methods: the objective that images are optimised against, one class per paper.

A method is built with the frozen teacher (eval mode, no gradients to its weights), the optional frozen student
(Adaptive DeepInversion's competitor) and its loss weights (``synthesis.loss`` of the config), and returns for a
batch ``x`` (``B x 3 x H x W``, normalised, already jittered / flipped by the runner) and its target classes (or
None) the weighted loss terms, ``{name: tensor}``; the runner sums and back-propagates them into the images. The
optimisation itself (Adam, schedule, jitter, flips, clipping, phases, resume) is shared:
:mod:`densekd.synthesis.runner`. Methods are registered in ``SYNTHESIS_METHODS`` under the names that
``synthesis.method`` takes.

=================  ======================================================================================
``deepinversion``  Yin et al., CVPR 2020 -- CE to the target class + BN feature regulariser + image priors
                   (+ Adaptive DeepInversion's competition term with ``adi > 0`` and a student)
``bns``            Haroush et al., CVPR 2020 (The Knowledge Within), BN-Statistics scheme -- KL between each
                   BatchNorm's stored Gaussian and the batch's
``inception``      Haroush et al., CVPR 2020, Inception scheme -- maximise the target class's logit, with a prior
``gaussian``       Haroush et al., CVPR 2020, Gaussian scheme -- random N(0, 1) inputs, no optimisation
=================  ======================================================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densekd.registry import SYNTHESIS_METHODS
from densekd.synthesis.bn import BNInputStats, bn_kl_loss, bn_moment_loss
from densekd.synthesis.priors import image_l2, js_divergence, total_variation
from densekd.tasks.base import main_output


class SynthesisMethod:
    """Base class. ``optimises``: False for a method whose images are the initial noise. ``uses_targets``: whether
    the objective reads target classes (the runner draws them, ``synthesis.labels``)."""

    optimises = True
    uses_targets = False
    name = ""

    def __init__(self, teacher: nn.Module, student: nn.Module | None = None):
        self.teacher = teacher
        self.student = student

    def losses(self, x: torch.Tensor, targets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def close(self) -> None:
        """Remove hooks."""

    def _priors(self, x: torch.Tensor, tv_l1: float, tv_l2: float, l2: float) -> dict[str, torch.Tensor]:
        out = {}
        if tv_l1:
            out["tv_l1"] = tv_l1 * total_variation(x, "l1")
        if tv_l2:
            out["tv_l2"] = tv_l2 * total_variation(x, "l2")
        if l2:
            out["l2"] = l2 * image_l2(x)
        return out


def _class_logits(output, who: str) -> torch.Tensor:
    logits = main_output(output)
    if not torch.is_tensor(logits) or logits.dim() != 2:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"{who} needs class logits (B x num_classes) from the teacher; it returns {shape}. For a dense "
                         f"teacher (segmentation) synthesise without targets: synthesis.labels=None and loss.ce=0")
    return logits


@SYNTHESIS_METHODS.register("deepinversion")
class DeepInversion(SynthesisMethod):
    """DeepInversion and Adaptive DeepInversion (Yin, Molchanov, Alvarez, Li, Mallya, Hoiem, Jha & Kautz, "Dreaming
    to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020).

    ``L(x) = ce * CE(T(x), y) + bn * R_feature(x) + tv_l2 * TV_l2(x) + tv_l1 * TV_l1(x) + l2 * ||x||_2
    + adi * (1 - JS(T(x), S(x)))``

    * ``R_feature`` (:func:`~densekd.synthesis.bn.bn_moment_loss`): for every BatchNorm of the teacher,
      ``||mean_batch(input) - running_mean||_2 + ||var_batch(input) - running_var||_2``, summed over the layers,
      the first one multiplied by ``first_bn_multiplier``.
    * ``TV_l2`` / ``TV_l1`` and ``||x||_2``: :mod:`densekd.synthesis.priors` (the release's four-neighbour forms).
    * the competition term of Adaptive DeepInversion: ``1 - JS`` of the teacher's and the student's softmaxes at
      temperature ``adi_T`` (:func:`~densekd.synthesis.priors.js_divergence`), i.e. ``-JS`` up to a constant:
      images on which the student disagrees with the teacher are preferred. Needs ``synthesis.student``.
    * without target classes (``targets=None``: ``synthesis.labels=None``, e.g. a segmentation teacher, whose
      output is a map) the CE term is left out and only the BN regulariser and the priors shape the images
      (our extension to dense teachers; the paper inverts classifiers only).

    Shapes: ``x`` B x 3 x H x W normalised, ``targets`` B class ids or None; the teacher's output B x K logits
    (B x K x H x W maps are fine without targets).

    Defaults: the "paper parameters" of the release's CIFAR-10 script (``cifar10/README.md``:
    ``--r_feature_weight=10 --di_lr=0.05``, ``di_var_scale`` 2.5e-5, ``di_l2_scale`` 0, ``cig_scale`` 0, no first-BN
    multiplier): ``ce=1, bn=10, first_bn_multiplier=1, tv_l2=2.5e-5, tv_l1=0, l2=0, adi=0, adi_T=3``. The release's
    ImageNet settings (``imagenet_inversion.py`` / its README command): ``bn=0.01`` (argparse default 0.05),
    ``first_bn_multiplier=10, tv_l2=1e-4, tv_l1=0, l2=1e-5``, ``adi=0.2`` in the paper's ADI experiments.

    Departures from the release: the JS divergence is the textbook one (no clamping to [0.01, 0.99], KL(P||M)
    rather than KL(M||P), see :mod:`densekd.synthesis.priors`) and not clipped to [0, 1] (it is bounded by log 2);
    every BatchNorm (1d/2d/3d) is hooked, not only BatchNorm2d; ``||x||_2`` is the mean per-image norm (the
    ImageNet release's; the CIFAR script takes one norm of the whole batch).
    """

    uses_targets = True

    def __init__(self, teacher: nn.Module, student: nn.Module | None = None, ce: float = 1.0, bn: float = 10.0,
                 first_bn_multiplier: float = 1.0, tv_l2: float = 2.5e-5, tv_l1: float = 0.0, l2: float = 0.0,
                 adi: float = 0.0, adi_T: float = 3.0):
        super().__init__(teacher, student)
        self.ce, self.bn, self.first_bn_multiplier = float(ce), float(bn), float(first_bn_multiplier)
        self.tv_l2, self.tv_l1, self.l2 = float(tv_l2), float(tv_l1), float(l2)
        self.adi, self.adi_T = float(adi), float(adi_T)
        if self.adi and student is None:
            raise ValueError("deepinversion: loss.adi > 0 (Adaptive DeepInversion) needs the student it competes with: "
                             "synthesis.student=dict(model=..., checkpoint=...)")
        if self.adi_T <= 0:
            raise ValueError(f"deepinversion: adi_T must be > 0; got {adi_T}")
        self.stats = BNInputStats(teacher) if self.bn else None

    def losses(self, x, targets):
        if self.stats is not None:
            self.stats.clear()
        out = self.teacher(x)
        losses = {}
        if targets is not None and self.ce:
            losses["ce"] = self.ce * F.cross_entropy(_class_logits(out, "deepinversion's CE term"), targets)
        if self.stats is not None:
            losses["bn"] = self.bn * bn_moment_loss(self.stats.stats, self.first_bn_multiplier)
        losses.update(self._priors(x, self.tv_l1, self.tv_l2, self.l2))
        if self.adi:
            t_logits = _class_logits(out, "Adaptive DeepInversion")
            s_logits = _class_logits(self.student(x), "Adaptive DeepInversion (the student)")
            losses["adi"] = self.adi * (1.0 - js_divergence(s_logits, t_logits, self.adi_T))
        if not losses:
            raise ValueError("deepinversion: every loss weight is 0 (or ce only, without target classes)")
        return losses

    def close(self):
        if self.stats is not None:
            self.stats.remove()


@SYNTHESIS_METHODS.register("bns")
class BNStatistics(SynthesisMethod):
    """The BN-Statistics scheme of Haroush, Hubara, Hoffer & Soudry, "The Knowledge Within: Methods for Data-Free
    Model Compression", CVPR 2020.

    ``L(x) = bn * sum_l sum_c KL(N(m^_lc, s^_lc^2) || N(m~_lc, s~_lc^2)) + priors``, where ``m~, s~^2`` are the
    running mean and variance stored in BatchNorm layer ``l`` for channel ``c`` and ``m^, s^^2`` the mean and
    (biased) variance of the layer's input over the batch and spatial positions;
    ``KL = log(s~ / s^) - 1/2 (1 - (s^^2 + (m^ - m~)^2) / s~^2)`` (:func:`~densekd.synthesis.bn.gaussian_kl`), both
    variances plus the layer's eps. No class target: the images only have to reproduce the statistics the teacher
    saw on its training data.

    Shapes: ``x`` B x 3 x H x W normalised; any teacher with BatchNorm (classifier or dense).

    Defaults: ``bn=1`` and no priors (``tv_l2=tv_l1=l2=0``), the paper's objective alone. Optimiser, iterations and
    jitter are the config's (the shipped configs use DeepInversion's CIFAR settings, Adam lr 0.05, 2000
    iterations, jitter 2, so that the two objectives are compared under one budget; the paper's own schedule is
    not reproduced).
    """

    def __init__(self, teacher: nn.Module, student: nn.Module | None = None, bn: float = 1.0, tv_l2: float = 0.0,
                 tv_l1: float = 0.0, l2: float = 0.0):
        super().__init__(teacher, student)
        self.bn, self.tv_l2, self.tv_l1, self.l2 = float(bn), float(tv_l2), float(tv_l1), float(l2)
        if self.bn <= 0:
            raise ValueError(f"bns: loss.bn must be > 0 (it is the method's objective); got {bn}")
        self.stats = BNInputStats(teacher)

    def losses(self, x, targets):
        self.stats.clear()
        self.teacher(x)
        losses = {"bn_kl": self.bn * bn_kl_loss(self.stats.stats)}
        losses.update(self._priors(x, self.tv_l1, self.tv_l2, self.l2))
        return losses

    def close(self):
        self.stats.remove()


@SYNTHESIS_METHODS.register("inception")
class Inception(SynthesisMethod):
    """The Inception scheme of Haroush et al., CVPR 2020 ("The Knowledge Within"): inputs optimised, as in
    Mordvintsev et al.'s Inceptionism / DeepDream, to maximise the logit of a chosen class, with a smoothness
    prior.

    ``L(x) = -logit * mean_b z_{y_b}(x_b) + tv_l2 * TV_l2(x) + tv_l1 * TV_l1(x) + l2 * ||x||_2``, ``z`` the teacher's
    logits (pre-softmax, so the other classes are not pushed down as a CE would), ``y_b`` the target class.

    Shapes: ``x`` B x 3 x H x W normalised, ``targets`` B class ids; the teacher's output B x K logits.

    Defaults: ``logit=1, tv_l2=2.5e-5, tv_l1=0, l2=0`` -- our choice (the prior is DeepInversion's TV at its CIFAR
    weight, with the runner's jitter and, in the shipped config, clipping to the valid pixel range, which bounds
    the otherwise unbounded logit); the paper's exact prior and schedule are not reproduced.
    """

    uses_targets = True

    def __init__(self, teacher: nn.Module, student: nn.Module | None = None, logit: float = 1.0, tv_l2: float = 2.5e-5,
                 tv_l1: float = 0.0, l2: float = 0.0):
        super().__init__(teacher, student)
        self.logit, self.tv_l2, self.tv_l1, self.l2 = float(logit), float(tv_l2), float(tv_l1), float(l2)

    def losses(self, x, targets):
        if targets is None:
            raise ValueError("inception: the objective is a class logit; set synthesis.labels='balanced' or 'random'")
        z = _class_logits(self.teacher(x), "the inception scheme")
        losses = {"logit": -self.logit * z.gather(1, targets.view(-1, 1)).mean()}
        losses.update(self._priors(x, self.tv_l1, self.tv_l2, self.l2))
        return losses


@SYNTHESIS_METHODS.register("gaussian")
class Gaussian(SynthesisMethod):
    """The Gaussian scheme of Haroush et al., CVPR 2020 ("The Knowledge Within"): the inputs are random N(0, 1)
    images in the teacher's normalised input space, with no optimisation (``synthesis.iterations`` is ignored).
    The paper distils on them with the student's BatchNorm statistics frozen (``freeze_bn_stats=True`` in the
    distillation config: Gaussian inputs would otherwise overwrite the running statistics the student needs on
    real images). Stored as uint8 like the other methods, i.e. clipped to the valid pixel range (at CIFAR's
    normalisation about 6% of the values fall outside it) -- a departure from fresh unclipped noise per step.

    Shapes: images ``B x 3 x H x W`` drawn from the batch's seeded generator (``synthesis.seed``, batch index); any
    teacher (it only labels the stored images, ``teacher_pred``). No parameters, no loss terms.
    """

    optimises = False

    def losses(self, x, targets):
        return {}
