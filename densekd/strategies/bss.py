"""Boundary-supporting samples (BSS): KD on the teacher's samples and on adversarial samples near its decision
boundary.

Heo, Lee, Yun & Choi, "Knowledge Distillation with Adversarial Samples Supporting Decision Boundary", AAAI 2019
(arXiv 1805.05532); the authors' release is github.com/bhheo/BSS_distillation (``train_BSS_distillation.py``,
``attacks/attack_BSS.py``, read at commit 586b141).

One iteration on a batch ``x`` (``B x 3 x H x W``) with labels ``y`` (``B``):

1. student logits ``s = f^S(x)``, teacher logits ``t = f^T(x)`` (``B x C``; the teacher without gradient);
2. **base samples**: those the teacher *and* the student classify correctly (``base_samples='both_correct'``,
   the release), at most ``attack_size`` of them; when more qualify, the ones with the largest
   ``sum_{c != y} (q_T(c) - q_S(c))^2`` (softmax at temperature 1) are kept. The base class of a sample is the
   teacher's prediction ``b = argmax t`` (``= y`` for these samples);
3. **target class** ``k != b`` of each base sample drawn with ``P(k) = q_T(k) / (1 - max q_T)``
   (:func:`target_class_probs`; the release samples the same distribution by inverse CDF over the sorted
   probabilities);
4. **BSS** (:func:`bss_attack`): from ``x^0 = x`` iterate on the teacher's margin ``L_k(x) = f_b(x) - f_k(x)``::

       x^{i+1} = x^i - eta * (L_k(x^i) + eps) * grad L_k(x^i) / ||grad L_k(x^i)||_2^p

   with ``p = grad_norm_power``, per sample, clipped to ``clamp``; a sample stops moving as soon as the
   teacher no longer predicts ``b`` on it (its decision flipped; ``f_k >= f_b`` is the usual way), and all stop
   after ``steps`` iterations. Only the input receives gradients (``torch.autograd.grad`` with respect to
   ``x``): the teacher's parameters never get a ``.grad`` and stay unchanged;
5. loss ``= task_weight * CE(s, y) + alpha(e) * KL_T(t || s) + beta(e) * KL_T(t(x_bss) || s(x_bss))``, with the
   student's second forward on the BSS samples (in train mode, as the release) and
   ``KL_T(t || s) = sum_c softmax(t/T)_c (log softmax(t/T)_c - log softmax(s/T)_c)`` averaged over the samples
   (:func:`soft_kl`); ``e`` is the 1-based epoch (constant within an epoch, as the release's loop), and the
   weights decay linearly (:func:`linear_decay`): ``alpha = 1 + 3 max(1 - e/E, 0)`` (4 -> 1 over the run) and
   ``beta = 2 max(1 - (4/3) e/E, 0)`` (2 -> 0 at three quarters of the run; no attack is run once it is 0).

Shapes: images ``B x ... `` (any input the teacher takes), logits ``B x C``; at most ``attack_size`` BSS per
process per iteration. Target classes are drawn from a CPU generator seeded by (run seed, iteration, rank), so
a resumed run draws the same classes.

Defaults and their source (the release's CIFAR-10 script and ``AttackBSS``; the paper's text was not at hand
here): ``T=3``, ``attack_size=64`` of a batch of 256, ``steps=10`` (``num_steps``), ``eta=0.3``
(``step_alpha``), ``eps=1e-4``, ``grad_norm_power=1``, ``clamp=(-2.5, 2.5)`` (the release's box in normalised
input space), ``kd_weight=dict(start=4, end=1, until=1.0)``, ``bss_weight=dict(start=2, end=0, until=0.75)``,
CE weight 1; the release trains 80 epochs, SGD lr 0.1 (/10 at 40 and 60), weight decay 1e-4.

Departures from the release:

* **The step normalisation.** The release divides by ``||grad||_2`` (``helpers.l2_norm`` is the square root of
  the sum of squares), not by its square: ``step = eta * (L + eps) * grad / ||grad||``, i.e.
  ``grad_norm_power=1``, the default here. ``grad_norm_power=2`` gives the DeepFool-style step
  ``(L + eps) grad / ||grad||^2``, which would reach the linearised boundary in one step at ``eta=1``.
* The distillation terms are KL divergences (zero when the student matches); the release writes the soft
  cross-entropy ``-sum_c p_T log p_S``, which differs by the teacher's entropy (a constant): same gradients.
* The BSS attack runs in float32 even under AMP.
* The release's loop counts epochs from 1 to 80 and applies the new weights from the first epoch; here
  ``E`` is the run's length in epochs (``train.epochs``, or ``train.iters`` over the loader's length).

Config::

    teacher = dict(model=dict(type='resnet32x4', num_classes=100), checkpoint=...)
    strategy = dict(type='bss', T=3.0, attack_size=64, steps=10, eta=0.3, eps=1e-4, grad_norm_power=1,
                    clamp=(-2.5, 2.5), base_samples='both_correct',
                    kd_weight=dict(start=4.0, end=1.0, until=1.0), bss_weight=dict(start=2.0, end=0.0, until=0.75))
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import ConfigError
from densekd.engine import distributed as dist
from densekd.engine.builder import build_student, build_teachers, calibrate_batchnorm
from densekd.engine.optim import build_optimizer
from densekd.registry import STRATEGIES
from densekd.strategies.base import BuildContext, Strategy
from densekd.tasks.base import batch_input, main_output

BASE_SAMPLES = ("both_correct", "teacher_correct", "any")


# --------------------------------------------------------------------------------------------- the math
def linear_decay(epoch: float, total_epochs: float, start: float, end: float, until: float = 1.0) -> float:
    """``end + (start - end) * max(1 - epoch / (until * total_epochs), 0)``: ``start`` at epoch 0, ``end`` from
    ``until * total_epochs`` on. The release's KD weight is ``(4, 1, 1.0)``, its BSS weight ``(2, 0, 0.75)``."""
    span = float(until) * float(total_epochs)
    frac = max(1.0 - float(epoch) / span, 0.0) if span > 0 else 0.0
    return float(end) + (float(start) - float(end)) * frac


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, T: float) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(student / T))`` summed over classes, averaged over the ``N`` rows
    (``N x C`` logits; no ``T^2`` factor, as the release). Zero rows give 0."""
    if student.shape[0] == 0:
        return student.sum() * 0.0
    log_p_s = F.log_softmax(student / T, dim=1)
    log_p_t = F.log_softmax(teacher.detach() / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def target_class_probs(teacher_logits: torch.Tensor) -> torch.Tensor:
    """The BSS target-class distribution of each row: ``P(k) = q_T(k) / (1 - max q_T)`` for ``k != argmax``,
    ``P(argmax) = 0`` (``B x C`` logits -> ``B x C`` probabilities). Computed as a softmax over the logits with
    the top class removed, which is the same value without dividing by a vanishing ``1 - max q_T``."""
    if teacher_logits.dim() != 2 or teacher_logits.shape[1] < 2:
        raise ValueError(f"BSS needs B x C classification logits with C >= 2; got {tuple(teacher_logits.shape)}")
    t = teacher_logits.detach().float()
    top = t.argmax(dim=1, keepdim=True)
    masked = t.scatter(1, top, float("-inf"))
    return masked.softmax(dim=1)


def sample_target_classes(teacher_logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One target class per row drawn from :func:`target_class_probs` (on the CPU generator ``generator``);
    returned on the logits' device."""
    probs = target_class_probs(teacher_logits).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(teacher_logits.device)


def select_base_samples(teacher_logits: torch.Tensor, student_logits: torch.Tensor, target: torch.Tensor | None,
                        size: int, rule: str = "both_correct") -> torch.Tensor:
    """Indices of the base samples (see the module docstring): correct for the teacher (and the student, with
    ``'both_correct'``), or any sample (``'any'``, no labels needed); when more than ``size`` qualify, the
    ``size`` with the largest ``sum_{c != b} (q_T(c) - q_S(c))^2`` (``b`` the teacher's class), ties in index
    order."""
    if rule not in BASE_SAMPLES:
        raise ValueError(f"base_samples must be one of {BASE_SAMPLES}; got {rule!r}")
    t, s = teacher_logits.detach(), student_logits.detach()
    b = t.argmax(dim=1)
    ok = torch.ones_like(b, dtype=torch.bool)
    if rule != "any":
        if target is None:
            raise ValueError(f"base_samples={rule!r} needs the labels (batch['target']); use 'any' without them")
        target = target.reshape(-1).long()
        ok = b == target
        if rule == "both_correct":
            ok = ok & (s.argmax(dim=1) == target)
    idx = ok.nonzero().flatten()
    if idx.numel() > size:
        diff = (t[idx].float().softmax(1) - s[idx].float().softmax(1)) ** 2
        score = diff.sum(1) - diff.gather(1, b[idx, None]).squeeze(1)
        order = torch.sort(score, descending=True, stable=True).indices
        idx = idx[order[:size]]
    return idx


@torch.enable_grad()
def bss_attack(teacher: nn.Module, x: torch.Tensor, target_class: torch.Tensor, steps: int = 10, eta: float = 0.3,
               eps: float = 1e-4, grad_norm_power: float = 1.0, clamp: tuple[float, float] | None = (-2.5, 2.5),
               record: bool = False):
    """Move each sample of ``x`` towards class ``target_class`` across the teacher's boundary (module docstring,
    step 4). Returns the BSS ``x_bss`` (detached, same shape as ``x``), and with ``record=True`` also a dict:
    ``margins`` (list over iterations of the ``B`` margins ``f_b - f_k`` at the iterate the step starts from),
    ``active`` (per iteration, which samples moved), ``base`` (the teacher's class on ``x``).

    Gradients are taken with respect to the input only: the teacher's parameters get no ``.grad``."""
    if steps < 0:
        raise ValueError(f"BSS steps must be >= 0; got {steps}")
    x0 = x.detach().float()
    target_class = target_class.reshape(-1).long()
    with torch.no_grad():
        base = teacher(x0).argmax(dim=1)
    adv = x0.clone()
    active = torch.ones_like(base, dtype=torch.bool)
    margins, moved = [], []
    view = (-1,) + (1,) * (x0.dim() - 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        out = main_output(teacher(adv)).float()
        margin = out.gather(1, base[:, None]).squeeze(1) - out.gather(1, target_class[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(margin.sum(), adv)
        active = active & (out.argmax(dim=1) == base)  # flipped samples stay where they are
        if record:
            margins.append(margin.detach().clone())
            moved.append(active.clone())
        if not bool(active.any()):
            break
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = eta * (margin.detach() + eps) / norm.pow(grad_norm_power) * active.to(grad.dtype)
        adv = adv.detach() - scale.view(view) * grad
        if clamp is not None:
            adv = adv.clamp(float(clamp[0]), float(clamp[1]))
    adv = adv.detach()
    if record:
        return adv, {"margins": margins, "active": moved, "base": base}
    return adv


# --------------------------------------------------------------------------------------------- the module
class BSSDistiller(nn.Module):
    """The student and its loss on a batch (base-sample KD + BSS KD + task loss); the teacher is held outside
    the module tree (frozen, eval mode, no optimiser, no DDP). ``forward(batch) -> (output, losses)``; the
    strategy sets ``weights`` (``alpha``, ``beta``) and ``generator`` before each call, and reads ``stats``."""

    def __init__(self, student: nn.Module, teacher: nn.Module, task, *, T: float, attack_size: int, steps: int,
                 eta: float, eps: float, grad_norm_power: float, clamp, base_samples: str, task_weight: float,
                 student_input: str = "image", teacher_input: str = "image"):
        super().__init__()
        self.student = student
        self._teacher = [teacher]  # a list: not a submodule
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.task = task
        self.T, self.attack_size, self.steps = float(T), int(attack_size), int(steps)
        self.eta, self.eps, self.grad_norm_power = float(eta), float(eps), float(grad_norm_power)
        self.clamp = None if clamp is None else (float(clamp[0]), float(clamp[1]))
        self.base_samples, self.task_weight = base_samples, float(task_weight)
        self.student_input, self.teacher_input = student_input, teacher_input
        self.weights = (1.0, 0.0)
        self.generator: torch.Generator | None = None
        self.stats = {"bss": 0, "flipped": 0}

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def train(self, mode: bool = True) -> "BSSDistiller":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, batch: dict):
        x_s = batch_input(batch, self.student_input, "the student")
        x_t = batch_input(batch, self.teacher_input, "the teacher")
        output = self.student(x_s)
        s = main_output(output)
        with torch.no_grad():
            t = main_output(self.teacher(x_t))
        alpha, beta = self.weights
        losses = {k: self.task_weight * v for k, v in self.task.loss(output, batch).items()}
        losses["kd"] = alpha * soft_kl(s, t, self.T)
        bss = s.new_zeros(())
        self.stats = {"bss": 0, "flipped": 0}
        if beta > 0 and self.attack_size > 0:
            idx = select_base_samples(t, s, batch.get("target"), self.attack_size, self.base_samples)
            if idx.numel():
                k = sample_target_classes(t[idx], self.generator)
                with torch.autocast(x_t.device.type, enabled=False):
                    adv = bss_attack(self.teacher, x_t[idx], k, self.steps, self.eta, self.eps,
                                     self.grad_norm_power, self.clamp)
                    with torch.no_grad():
                        t_adv = main_output(self.teacher(adv))
                s_adv = main_output(self.student(adv.to(x_s.dtype)))
                bss = soft_kl(s_adv, t_adv, self.T)
                self.stats = {"bss": int(idx.numel()), "flipped": int((t_adv.argmax(1) != t[idx].argmax(1)).sum())}
        losses["bss"] = beta * bss
        return output, losses


# --------------------------------------------------------------------------------------------- the strategy
def _weight_spec(value: Any, name: str) -> dict:
    if isinstance(value, (int, float)):
        return dict(start=float(value), end=float(value), until=1.0)
    if not isinstance(value, dict) or not set(value) <= {"start", "end", "until"} or "start" not in value:
        raise ConfigError(f"strategy.{name} must be a number or dict(start=..., end=..., until=...) (a linear decay "
                          f"from start to end reached at `until` x the run's epochs); got {value!r}")
    spec = dict(start=float(value["start"]), end=float(value.get("end", value["start"])),
                until=float(value.get("until", 1.0)))
    if spec["until"] <= 0:
        raise ConfigError(f"strategy.{name}.until must be > 0 (a fraction of the run); got {spec['until']}")
    return spec


@STRATEGIES.register("bss")
class BSSStrategy(Strategy):
    """Boundary-supporting-sample distillation (see the module docstring for the algorithm and its sources).

    Args:
        T: temperature of both KD terms (release: 3).
        attack_size: at most this many base samples (hence BSS) per process and iteration (release: 64 of 256).
        steps, eta, eps, grad_norm_power, clamp: the iterative scheme (release: 10, 0.3, 1e-4, 1, (-2.5, 2.5));
            ``clamp=None`` leaves the BSS unclipped.
        base_samples: ``'both_correct'`` (release), ``'teacher_correct'`` (the release's first commit) or ``'any'``.
        kd_weight, bss_weight: weights of the base-sample and BSS KD terms: a number, or
            ``dict(start, end, until)`` decaying linearly from ``start`` to ``end`` at ``until`` x the run.
    """

    def __init__(self, ctx: BuildContext, T: float = 3.0, attack_size: int = 64, steps: int = 10, eta: float = 0.3,
                 eps: float = 1e-4, grad_norm_power: float = 1.0, clamp: tuple | list | None = (-2.5, 2.5),
                 base_samples: str = "both_correct", kd_weight: Any = None, bss_weight: Any = None):
        super().__init__(ctx)
        cfg = ctx.cfg
        if cfg.get("distill"):
            raise ConfigError("strategy 'bss' has its own KD terms (strategy.kd_weight, strategy.bss_weight); "
                              "remove `distill` from the config")
        if base_samples not in BASE_SAMPLES:
            raise ConfigError(f"strategy.base_samples must be one of {BASE_SAMPLES}; got {base_samples!r}")
        if not T > 0 or int(attack_size) < 0 or int(steps) < 0 or not eta > 0:
            raise ConfigError(f"strategy 'bss' needs T > 0, attack_size >= 0, steps >= 0, eta > 0; got T={T}, "
                              f"attack_size={attack_size}, steps={steps}, eta={eta}")
        if clamp is not None and (len(clamp) != 2 or float(clamp[0]) >= float(clamp[1])):
            raise ConfigError(f"strategy.clamp must be None or (low, high) with low < high; got {clamp!r}")
        self.kd_spec = _weight_spec(dict(start=4.0, end=1.0, until=1.0) if kd_weight is None else kd_weight,
                                    "kd_weight")
        self.bss_spec = _weight_spec(dict(start=2.0, end=0.0, until=0.75) if bss_weight is None else bss_weight,
                                     "bss_weight")
        student = build_student(cfg, info=ctx.info, warn=ctx.warn)
        teachers, inputs, untrained = build_teachers(cfg, ctx.synthetic, warn=ctx.warn)
        if len(teachers) != 1:
            raise ConfigError(f"strategy 'bss' distils from one teacher; the config defines {len(teachers)} "
                              f"(set `teacher = dict(model=..., checkpoint=...)`)")
        if untrained[0]:
            calibrate_batchnorm(teachers[0], ctx.calibration_batches(), inputs[0])
        self.module = BSSDistiller(student, teachers[0], ctx.task, T=T, attack_size=attack_size, steps=steps, eta=eta,
                                   eps=eps, grad_norm_power=grad_norm_power, clamp=clamp, base_samples=base_samples,
                                   task_weight=float(cfg.get("task_weight", 1.0)), student_input=ctx.student_input,
                                   teacher_input=inputs[0])
        self.optimizer = build_optimizer(cfg.get("optimizer", dict(type="SGD", lr=0.1)), [self.module], named=student)
        train = cfg.get("train", {}) or {}
        ipe = max(int(ctx.iters_per_epoch), 1)
        self.total_epochs = float(train["iters"]) / ipe if train.get("iters") else float(train.get("epochs", 1))
        self.seed = int(cfg.get("seed", 0))
        self.counts = {"bss_samples": 0, "bss_flipped": 0}

    @property
    def student(self) -> nn.Module:
        return self.module.student

    def weights_at(self, epoch: float) -> tuple[float, float]:
        """``(alpha, beta)`` during fractional epoch ``epoch`` (counted from 0): the release's weights of the
        1-based epoch ``floor(epoch) + 1``."""
        e = math.floor(max(float(epoch), 0.0)) + 1
        return (linear_decay(e, self.total_epochs, **self.kd_spec), linear_decay(e, self.total_epochs, **self.bss_spec))

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"student": self.optimizer}

    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        from densekd.data.sampling import mix_seed

        self.module.weights = self.weights_at(step.epoch)
        self.module.generator = torch.Generator().manual_seed(mix_seed(self.seed, step.iter, dist.rank()))
        losses = step.forward_backward(batch, self.optimizer)
        if losses is None:
            return None
        self.counts["bss_samples"] += self.module.stats["bss"]
        self.counts["bss_flipped"] += self.module.stats["flipped"]
        if step.step_now:
            step.optimizer_step(self.optimizer)
        return losses

    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        super().to(device, memory_format)
        self.module.teacher.to(device)
        if memory_format is not None:
            self.module.teacher.to(memory_format=memory_format)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.counts = dict(state.get("counts", self.counts))

    def summary(self) -> dict:
        n = self.counts["bss_samples"]
        return {"bss_samples": n, "bss_flipped": self.counts["bss_flipped"],
                "bss_flip_rate": round(self.counts["bss_flipped"] / n, 4) if n else None}
