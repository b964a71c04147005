"""KDCL: online knowledge distillation via collaborative learning.

Guo, Wang, Wu, Yu, Liang, Hu & Luo, "Online Knowledge Distillation via Collaborative Learning", CVPR 2020.
``m`` students (same or different architectures) train together from scratch. Each sees its own
augmentation of the batch; their logits ``z_1 .. z_m`` (``B x C``, each on its own view) are combined into an
ensemble teacher ``z_t``, and student ``i`` minimises

    ``L_i = CE(z_i, y) + weight * T^2 * KL(softmax(z_t / T) || softmax(z_i / T))``     (batch mean)

with ``z_t`` detached: the teacher is a target, so the KD term of student ``i`` sends gradient to student
``i`` only (one backward pass of ``sum_i L_i``; every student has its own optimiser, as in
:mod:`densekd.strategies.cohort`). The ensemble rules (``rule=``):

* ``'naive'`` (KDCL-Naive): per sample ``n``, the logits of the student with the lowest cross-entropy on
  that sample, ``z_t[n] = z_k[n]`` with ``k = argmin_i CE(z_i[n], y_n)`` (ties: the lowest index).
* ``'linear'`` (KDCL-Linear): ``z_t = sum_i w_i z_i`` with weights minimising the ensemble's cross-entropy.
  Here they are fitted on a held-out split (:class:`~densekd.data.multiview.HoldoutSplit` around the
  training set; its held-out part is never trained on): at the first iteration of every epoch ``e >= 1`` all
  students predict the held-out samples (eval mode, no augmentation, no gradient) and ``w`` (``m`` numbers,
  unconstrained) minimises ``mean_n CE(sum_i w_i z_i[n], y_n)`` by full-batch L-BFGS (strong-Wolfe line
  search, ``fit_iters=100`` iterations, from ``1/m`` each); epoch 0 uses ``1/m`` each (untrained students
  say nothing about weights). The weights then stay fixed for the epoch.
* ``'minlogit'`` (KDCL-MinLogit): per sample, each student's logits relative to its target-class logit,
  ``z_i - z_i[y]``, and their elementwise minimum over the students, ``z_t[n, c] = min_i (z_i[n, c] -
  z_i[n, y_n])`` (the target entry is 0; every other class gets the most confident student's margin).
* ``'general'`` (KDCL-General): ``z_t = sum_i w_i z_i`` with the weights of the generalisation-error
  estimate on the same held-out split and schedule as ``'linear'``: with the error vectors
  ``e_i[n] = softmax(z_i[n]) - onehot(y_n)``, ``C_ij = mean_n <e_i[n], e_j[n]>`` and
  ``w = C^-1 1 / (1^T C^-1 1)`` (the optimal linear combination of Perrone & Cooper, which is how we read the
  paper's KDCL-General; a ridge of ``1e-6 * trace(C) / m`` keeps ``C`` invertible when students agree).

Labels at test time are unknown, so the evaluated ensemble (``ensemble`` in ``summary.json``'s ``models``,
``eval_ensemble=True``) is the weighted logit sum with the fitted weights for ``'linear'`` / ``'general'``
and the mean of the logits for ``'naive'`` / ``'minlogit'``; each student is evaluated on its own as well.

Defaults: ``T=2.0``, ``weight=1.0`` (the paper's KD temperature and weight as we recall them; the paper's text
was not at hand, so treat both as unverified), ``rule='minlogit'``. Views: ``student_inputs=['image_0', ...]``
with ``data.train`` wrapped in :class:`~densekd.data.multiview.MultiViewDataset` (one augmentation draw per
student); without it every student reads ``student_input`` (one view for all). Classification only (``B x C``
logits and class-index targets). Departures: the students step together on each batch (as DML here); the
linear / general weights are refitted once per epoch, not per batch. Exact resume: the strategy state holds
every student's optimiser, the weights and the epoch they were fitted for.

Config::

    data = dict(train=dict(_delete_=True, type='MultiViewDataset', views=2,
                           dataset=dict(type='HoldoutSplit', holdout=5000, dataset=dict(type='CIFAR100', ...))))
    strategy = dict(type='kdcl', peers=[dict(type='resnet32', num_classes=100)], rule='linear', T=2.0,
                    weight=1.0, student_inputs=['image_0', 'image_1'])
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import Config, ConfigError
from densekd.data.multiview import HoldoutSplit, find_wrapper
from densekd.data.sampling import build_loader
from densekd.engine import distributed as dist
from densekd.engine.evaluate import to_device
from densekd.losses.logits import KD
from densekd.models.ensemble import LogitEnsemble
from densekd.registry import STRATEGIES
from densekd.strategies.base import BuildContext
from densekd.strategies.cohort import CohortStrategy, StudentCohort, peer_names
from densekd.tasks.base import batch_input, main_output

__all__ = ["RULES", "naive_teacher", "minlogit_teacher", "linear_teacher", "fit_linear_weights", "general_weights",
           "KDCLCohort", "KDCLStrategy"]

RULES = ("naive", "linear", "minlogit", "general")
FITTED_RULES = ("linear", "general")


# --------------------------------------------------------------------------- the ensemble rules
def _stack(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    z = torch.stack([x.float() for x in logits])
    if z.dim() != 3:
        raise ValueError(f"KDCL works on classification logits B x C; got student outputs of shape "
                         f"{tuple(logits[0].shape)}")
    return z


def _target(target: Any, z: torch.Tensor) -> torch.Tensor:
    if target is None:
        raise ValueError("KDCL's ensemble rules need the batch's class labels (batch['target'])")
    t = torch.as_tensor(target, device=z.device)
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (z.shape[1],) or t.dtype.is_floating_point:
        raise ValueError(f"KDCL needs integer class indices of shape ({z.shape[1]},) as target; got "
                         f"{tuple(t.shape)} {t.dtype}")
    return t.long()


def naive_teacher(logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """KDCL-Naive: per sample, the logits of the student with the lowest cross-entropy (``B x C``)."""
    z = _stack(logits)
    t = _target(target, z)
    m, b, c = z.shape
    ce = F.cross_entropy(z.reshape(m * b, c), t.repeat(m), reduction="none").reshape(m, b)
    best = ce.argmin(dim=0)  # the first minimum on ties
    return z[best, torch.arange(b, device=z.device)]


def minlogit_teacher(logits: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """KDCL-MinLogit: ``min_i (z_i - z_i[y])`` elementwise over the students (``B x C``)."""
    z = _stack(logits)
    t = _target(target, z)
    zy = z.gather(2, t.view(1, -1, 1).expand(z.shape[0], -1, 1))
    return (z - zy).min(dim=0).values


def linear_teacher(logits: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i z_i`` (KDCL-Linear and KDCL-General)."""
    z = _stack(logits)
    return torch.einsum("m,mbc->bc", weights.to(z), z)


def fit_linear_weights(logits: torch.Tensor, target: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """The weights ``w`` (``m``) minimising ``mean_n CE(sum_i w_i logits[i, n], target[n])``: full-batch L-BFGS
    (strong-Wolfe line search) from ``1/m`` each, in float64 on ``logits``' device. ``logits``: ``m x N x C``."""
    z = logits.detach().double()
    t = _target(target, z)
    w = torch.full((z.shape[0],), 1.0 / z.shape[0], dtype=torch.float64, device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=int(iters), line_search_fn="strong_wolfe",
                            tolerance_grad=1e-10, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(torch.einsum("m,mnc->nc", w, z), t)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach().float()


def general_weights(logits: torch.Tensor, target: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """KDCL-General's weights from the error correlations on held-out data: ``e_i = softmax(z_i) - onehot(y)``,
    ``C_ij = mean_n <e_i[n], e_j[n]>``, ``w = C^-1 1 / (1^T C^-1 1)`` (``C`` plus ``ridge * trace(C) / m``)."""
    z = logits.detach().double()
    t = _target(target, z)
    m = z.shape[0]
    e = z.softmax(dim=2) - F.one_hot(t, z.shape[2]).to(z)
    corr = torch.einsum("inc,jnc->ij", e, e) / z.shape[1]
    corr = corr + ridge * corr.diagonal().sum() / m * torch.eye(m, dtype=z.dtype, device=z.device)
    w = torch.linalg.solve(corr, torch.ones(m, dtype=z.dtype, device=z.device))
    return (w / w.sum()).float()


# --------------------------------------------------------------------------- the cohort
class KDCLCohort(StudentCohort):
    """The students and their ensemble teacher: ``'<name>/<task term>'`` and ``'<name>/kdcl'`` (``weight * KD(T)``
    against the detached ensemble) per student. ``ensemble_weights`` (buffer) are the linear / general weights."""

    def __init__(self, students: list[nn.Module], names: list[str], task, input_keys, rule: str = "minlogit",
                 T: float = 2.0, weight: float = 1.0):
        super().__init__(students, names, task, input_keys)
        if rule not in RULES:
            raise ConfigError(f"strategy 'kdcl': rule={rule!r}; choose one of {', '.join(RULES)}")
        self.rule = rule
        self.kd = KD(T=T)
        self.weight = float(weight)
        m = len(self.students)
        self.register_buffer("ensemble_weights", torch.full((m,), 1.0 / m))

    def teacher(self, preds: Sequence[torch.Tensor], target) -> torch.Tensor:
        """The ensemble teacher's logits from the students' (detached) predictions."""
        z = [p.detach() for p in preds]
        if self.rule == "naive":
            return naive_teacher(z, target)
        if self.rule == "minlogit":
            return minlogit_teacher(z, target)
        return linear_teacher(z, self.ensemble_weights)

    def cohort_losses(self, preds: list[torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        z_t = self.teacher(preds, batch.get("target"))
        return {f"{name}/kdcl": self.weight * self.kd(p, z_t.to(p.dtype)) for name, p in zip(self.names, preds)}


@STRATEGIES.register("kdcl")
class KDCLStrategy(CohortStrategy):
    """KDCL of ``1 + len(peers)`` students (see the module docstring).

    Args:
        peers: model configs of the students beside ``model``.
        rule: ``'naive'``, ``'linear'``, ``'minlogit'`` (default) or ``'general'``.
        T: KD temperature (default 2). weight: weight of each student's KD term (default 1).
        student_inputs: one training batch key per student (``['image_0', 'image_1']`` with
            ``MultiViewDataset``); default: every student reads ``student_input``.
        peer_optimizers: one dict per peer merged over ``optimizer``.
        fit_iters: L-BFGS iterations of the ``'linear'`` fit. fit_batch_size: batch of the held-out pass
            (default ``data.val_batch_size``, else ``data.batch_size``).
        eval_ensemble: also evaluate the ensemble (``models.ensemble``).
    """

    name = "kdcl"

    def __init__(self, ctx: BuildContext, peers: list[dict] = (), rule: str = "minlogit", T: float = 2.0,
                 weight: float = 1.0, student_inputs: list[str] | None = None,
                 peer_optimizers: list[dict] | None = None, fit_iters: int = 100, fit_batch_size: int | None = None,
                 eval_ensemble: bool = True):
        if rule not in RULES:
            raise ConfigError(f"strategy 'kdcl': rule={rule!r}; choose one of {', '.join(RULES)}")
        if not T > 0:
            raise ConfigError(f"strategy 'kdcl': T must be > 0, got {T}")
        self.rule, self.T, self.weight = rule, float(T), float(weight)
        super().__init__(ctx, peers, peer_optimizers, student_inputs)
        self.fit_iters = int(fit_iters)
        self.ensemble = LogitEnsemble(self.students)
        self.eval_ensemble = bool(eval_ensemble)
        self.fitted_epoch = 0  # the epoch the current weights are for (epoch 0: 1/m)
        self.fits: list[dict] = []
        self.holdout = None
        if rule in FITTED_RULES:
            split = find_wrapper(ctx.train_set, HoldoutSplit)
            if split is None or split.part != "train":
                raise ConfigError(f"strategy 'kdcl' with rule={rule!r} fits its ensemble weights on held-out data: "
                                  f"wrap the training set in HoldoutSplit, e.g. data.train = dict(type="
                                  f"'MultiViewDataset', views={len(self.names)}, dataset=dict(type='HoldoutSplit', "
                                  f"holdout=0.1, dataset=dict(type='CIFAR100', ...)))")
            self.holdout = split.holdout_set()
            data = ctx.cfg.get("data") or {}
            self.fit_batch_size = int(fit_batch_size or data.get("val_batch_size") or data.get("batch_size", 64))

    def build_cohort(self, students: list[nn.Module], input_keys) -> KDCLCohort:
        return KDCLCohort(students, self.names, self.ctx.task, input_keys, self.rule, self.T, self.weight)

    # -- the fitted weights -----------------------------------------------------------------------------------
    @property
    def weights(self) -> torch.Tensor:
        return self.module.ensemble_weights.detach().cpu().clone()

    def _set_weights(self, w: torch.Tensor) -> None:
        with torch.no_grad():
            self.module.ensemble_weights.copy_(w.to(self.module.ensemble_weights))
        self.ensemble.set_weights(w)

    @torch.no_grad()
    def holdout_logits(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Every student's logits on the held-out part (``m x N x C``) and its labels (``N``): eval mode, no
        gradient, in order; the global RNGs are left as they were."""
        loader = build_loader(self.holdout, self.fit_batch_size, shuffle=False, seed=0, train=False)
        modes = [m.training for m in self.students]
        key = self.ctx.student_input
        outs: list[list[torch.Tensor]] = [[] for _ in self.students]
        targets = []
        try:
            for m in self.students:
                m.eval()
            for batch in loader:
                batch = to_device(batch, device)
                x = batch_input(batch, key, "the held-out pass")
                for i, m in enumerate(self.students):
                    outs[i].append(main_output(m(x)).float())
                targets.append(batch["target"])
        finally:
            for m, mode in zip(self.students, modes):
                m.train(mode)
        return torch.stack([torch.cat(o) for o in outs]), torch.cat(targets)

    def fit(self, device: torch.device, epoch: int) -> torch.Tensor:
        """Fit the linear / general weights on the held-out part with the students as they are now."""
        z, t = self.holdout_logits(device)
        w = fit_linear_weights(z, t, self.fit_iters) if self.rule == "linear" else general_weights(z, t)
        w = torch.as_tensor(dist.broadcast_object(w.cpu().tolist()))  # every process uses rank 0's weights
        with torch.no_grad():
            ce = F.cross_entropy(torch.einsum("m,mnc->nc", w.to(z), z), t.long()).item()
        self._set_weights(w)
        self.fitted_epoch = epoch
        self.fits.append({"epoch": epoch, "weights": [round(float(v), 6) for v in w], "holdout_ce": round(ce, 6)})
        self.ctx.info(f"KDCL-{self.rule} ensemble weights for epoch {epoch} from {z.shape[1]} held-out samples: "
                      f"{[round(float(v), 4) for v in w]} (held-out CE of the ensemble {ce:.4f})")
        return w

    # -- steps ---------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        if self.holdout is not None and int(step.epoch) > self.fitted_epoch:
            self.fit(step.device, int(step.epoch))
        return super().train_step(batch, step)

    # -- evaluation, devices, checkpoints ----------------------------------------------------------------------
    def eval_models(self) -> dict[str, nn.Module]:
        models = super().eval_models()
        if self.eval_ensemble:
            models["ensemble"] = self.ensemble
        return models

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        super().to(device, memory_format)
        self.ensemble.to(device)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ensemble_weights": self.weights, "fitted_epoch": self.fitted_epoch,
                "fits": list(self.fits)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._set_weights(torch.as_tensor(state["ensemble_weights"]))
        self.fitted_epoch = int(state["fitted_epoch"])
        self.fits = list(state.get("fits", []))

    def summary(self) -> dict:
        return {**super().summary(), "rule": self.rule, "T": self.T, "weight": self.weight,
                "ensemble_weights": [round(float(v), 6) for v in self.weights],
                "ensemble_fits": list(self.fits)}

    @classmethod
    def eval_model_configs(cls, cfg: Config, peers: Sequence[dict] = (), eval_ensemble: bool = True,
                           **kwargs) -> dict[str, dict]:
        configs = dict(zip(peer_names(len(peers)), [cfg["model"], *peers]))
        if eval_ensemble:
            configs["ensemble"] = dict(type="logit_ensemble", members=[cfg["model"], *peers])
        return configs
