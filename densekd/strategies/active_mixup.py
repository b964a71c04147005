"""Active mixup: data-efficient distillation from a black-box teacher that is only queried for probabilities.

Wang, Li, Wang & Gong, "Neural Networks Are More Productive Teachers Than Human Raters: Active Mixup for
Data-Efficient Knowledge Distillation from a Blackbox Model", CVPR 2020 (arXiv 2003.13960); the authors'
release is github.com/dwang181/active-mixup (``00_data_prep.py`` ... ``active_train.py``, read at fc113db).

Setting: a small unlabeled set ``U`` (``data.train``, ``N`` images ``C x H x W``, read once without
augmentation) and a teacher reached only through :class:`~densekd.strategies.blackbox.BlackBoxTeacher`
(``query(images) -> B x K probabilities``, counted against ``budget``). The strategy never holds the network.

* **Pool.** Pairs of ``U`` by index rotation, as the release: pair ``p = s * N + j`` (``0 <= s < (N - 1) // 2``)
  mixes image ``j`` with image ``(j - s - 1) mod N``, ``N * ((N - 1) // 2)`` pairs, each unordered pair once for
  odd ``N``. A pair's image is ``x = lam * x_j + (1 - lam) * x_{(j - s - 1) mod N}`` with ``lam`` searched on the
  grid ``lambdas`` (release: 0.30, 0.34, ..., 0.70) for the value that **minimises the student's confidence**
  ``max_c softmax(f_S(x))_c`` (student in eval mode; the first minimiser on ties) (:func:`score_pool`).
* **Rounds.** Round 0: the queried set is ``U`` itself, its ``N`` images queried from the teacher. Before round
  ``r >= 1`` the student of round ``r - 1`` scores the remaining pool (all of it, or ``pool_size`` pairs drawn
  from it); the ``n_r = min(per_round, budget left, pool left)`` least confident images (stable argsort of the
  confidences, :func:`least_confident`) are queried, added with the teacher's probabilities, and leave the pool.
  The student then trains on the whole queried set (``retrain=True``, the release: from its initial weights
  and a fresh optimiser state; ``False``: fine-tuned on).
* **Training.** Loss ``T^2 * KL(p_T^(T) || softmax(f_S(x) / T))`` averaged over the batch, with the teacher's
  probabilities tempered as ``p^(T) = softmax(log p / T)`` (the same as softmax of its logits over ``T``);
  batches of ``data.batch_size`` drawn epoch after epoch from a permutation of the queried set, with a random
  4-pixel-padded crop and horizontal flip (``augment``). The run's iterations (``train.iters`` or
  ``train.epochs`` over ``U``'s loader) are split over the ``rounds + 1`` rounds in proportion to each round's
  queried-set size (``split='proportional'``: the same number of epochs over each round's set, as the
  release's 200 per round) or equally; the learning rate restarts every round following ``round_lr``
  (milestones as fractions of the round; release: /10 at 40 %, 70 %, 90 % of 200 epochs).

The trainer's own batches of ``U`` only count iterations: every batch the student sees comes from the queried
set. The round, the queried set (its pair ids, ``lam`` indices and teacher probabilities, and those of ``U``),
the query count and the optimiser are in the checkpoint (``strategy``), written atomically with it; mixup
images are rebuilt from ``U``. Batch order and augmentation are seeded by (run seed, round, position), so
``--resume`` anywhere (inside a round or at its boundary, where the next round's queries are made on resuming)
continues exactly.

Defaults and their source (the release): ``lambdas`` 0.30:0.04:0.70, ``per_round=10000``, ``T=1``,
``retrain=True``, ``round_lr`` multistep at 0.4/0.7/0.9, ``score_batch_size=1000``; its CIFAR-10 example uses
``N=1000`` real images, SGD lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, 200 epochs per round.
``rounds=4`` is densekd's choice (the release repeats its stage by hand).

Departures from the release: the training loss is the KL divergence (the release's soft cross-entropy differs
by the teacher's entropy: same gradients) with an optional temperature; padding of the crops is zero in
normalised space (the release pads black pixels of unnormalised [0, 1] images); ``pool_size`` optionally
scores a random part of the pool; a single process only (no DDP).

Config::

    teacher = dict(model=dict(type='resnet32x4', num_classes=100), checkpoint=...)      # queried only
    data = dict(train=dict(type='SubsetDataset', dataset=dict(type='CIFAR100', split='train', augment=False),
                           num_samples=1000))
    lr_schedule = dict(_delete_=True, type='constant')                                   # rounds restart it
    strategy = dict(type='active_mixup', rounds=4, per_round=10000, budget=None, pool_size=None,
                    round_lr=dict(type='multistep', milestones=[0.4, 0.7, 0.9], gamma=0.1))
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import ConfigError
from densekd.data.sampling import forked_rng, mix_seed
from densekd.engine import distributed as dist
from densekd.engine.builder import build_student
from densekd.engine.optim import LRSchedule, build_optimizer, set_lr
from densekd.registry import STRATEGIES
from densekd.strategies.base import BuildContext, Strategy
from densekd.strategies.blackbox import build_blackbox_teacher
from densekd.tasks.base import main_output

LAMBDAS = tuple(round(0.30 + 0.04 * i, 2) for i in range(11))  # the release's np.arange(0.30, 0.74, 0.04)


# --------------------------------------------------------------------------------------------- the pool
def pool_pairs(n: int) -> int:
    """The number of rotation pairs of ``n`` images: ``n * ((n - 1) // 2)``."""
    return n * max((n - 1) // 2, 0)


def pair_members(ids: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two images ``(j, (j - s - 1) mod n)`` of pair ids ``p = s * n + j``."""
    s, j = ids // n, ids % n
    return j, (j - s - 1) % n


def mix_images(images: torch.Tensor, ids: torch.Tensor, lams: torch.Tensor) -> torch.Tensor:
    """``lam * x_a + (1 - lam) * x_b`` for pairs ``ids`` of ``images`` (``N x ...``) and weights ``lams``."""
    a, b = pair_members(ids.to(images.device), images.shape[0])
    w = lams.to(images.device, images.dtype).view((-1,) + (1,) * (images.dim() - 1))
    return w * images[a] + (1 - w) * images[b]


@torch.no_grad()
def score_pool(student: nn.Module, images: torch.Tensor, ids: torch.Tensor, lambdas, batch_size: int = 1000):
    """For each pair id, the student's lowest confidence over ``lambdas`` and the index of the ``lam`` giving it:
    ``conf[p] = min_l max_c softmax(f_S(lam_l x_a + (1 - lam_l) x_b))_c`` (student in eval mode; the first ``l``
    on ties). Returns ``(conf, lam_index)``, both of length ``len(ids)``, on the CPU."""
    was = student.training
    student.eval()
    confs, best = [], []
    try:
        for chunk in ids.split(max(int(batch_size), 1)):
            per_lam = []
            for lam in lambdas:
                x = mix_images(images, chunk, torch.full((chunk.numel(),), float(lam)))
                per_lam.append(main_output(student(x)).float().softmax(dim=1).amax(dim=1))
            c = torch.stack(per_lam)  # L x K
            arg = torch.argmin(c, dim=0)
            confs.append(c.gather(0, arg[None]).squeeze(0).cpu())
            best.append(arg.cpu())
    finally:
        student.train(was)
    if not confs:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return torch.cat(confs), torch.cat(best)


def least_confident(conf: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` lowest confidences (stable ascending order)."""
    return torch.sort(conf, stable=True).indices[:max(int(k), 0)]


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per sample: a random ``H x W`` crop of the zero-padded image, then a horizontal flip with probability 1/2
    (offsets and flips drawn from the CPU ``generator``; ``B x C x H x W`` on any device)."""
    b, _, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).to(x.device)
    flips = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    padded = F.pad(x, (padding,) * 4)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # B x H
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # B x W
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


class SoftTargetStudent(nn.Module):
    """The student and its loss on ``batch['image']`` against ``batch['soft_target']`` (teacher probabilities,
    ``B x K``): ``T^2 * KL(softmax(log p / T) || softmax(s / T))``, batch mean."""

    def __init__(self, student: nn.Module, T: float = 1.0):
        super().__init__()
        self.student = student
        self.T = float(T)

    def forward(self, batch: dict):
        output = self.student(batch["image"])
        s = main_output(output).float()
        log_p_t = F.log_softmax(batch["soft_target"].float().clamp_min(1e-12).log() / self.T, dim=1)
        loss = F.kl_div(F.log_softmax(s / self.T, dim=1), log_p_t, reduction="batchmean", log_target=True)
        return output, {"kd": loss * self.T ** 2}


# --------------------------------------------------------------------------------------------- the strategy
@STRATEGIES.register("active_mixup")
class ActiveMixupStrategy(Strategy):
    """Active mixup (see the module docstring).

    Args:
        rounds: query rounds after round 0 (whose queried set is the unlabeled set itself).
        per_round: teacher queries per round (release: 10000).
        budget: total teacher queries, the unlabeled set's included (default ``N + rounds * per_round``).
        lambdas: the mixing weights searched per pair (release: 0.30, 0.34, ..., 0.70).
        pool_size: score only this many pairs of the remaining pool per round (drawn by (seed, round));
            None scores all of them (release).
        T: temperature of the distillation loss (release: 1).
        retrain: restart the student from its initial weights each round (release) or fine-tune it.
        split: ``'proportional'`` (iterations per round in proportion to its queried set) or ``'equal'``.
        augment: random crop (padding 4) and flip of the training batches (release).
        round_lr: the learning-rate schedule of each round: ``dict(type='multistep'|'cosine'|'poly'|'constant',
            milestones=[fractions of the round], gamma, power, min_lr_ratio)``.
        score_batch_size, query_batch_size: chunk sizes for scoring the pool and querying the teacher.
    """

    def __init__(self, ctx: BuildContext, rounds: int = 4, per_round: int = 10000, budget: int | None = None,
                 lambdas=LAMBDAS, pool_size: int | None = None, T: float = 1.0, retrain: bool = True,
                 split: str = "proportional", augment: bool = True, round_lr: dict | None = None,
                 score_batch_size: int = 1000, query_batch_size: int = 100):
        super().__init__(ctx)
        cfg = ctx.cfg
        if dist.world_size() > 1:
            raise ConfigError("strategy 'active_mixup' runs in one process (its pool scoring and teacher queries are "
                              "not split across processes); start it without torchrun")
        for key in ("distill", "teachers"):
            if cfg.get(key):
                raise ConfigError(f"strategy 'active_mixup' distils from one black-box teacher by its own loss; "
                                  f"remove `{key}` from the config (give `teacher = dict(model=..., checkpoint=...)`)")
        if (cfg.get("lr_schedule") or {}).get("type", "constant") != "constant":
            raise ConfigError("strategy 'active_mixup' restarts the learning rate every round (strategy.round_lr); "
                              "set lr_schedule = dict(_delete_=True, type='constant')")
        if getattr(ctx.train_set, "augment", False):
            raise ConfigError("strategy 'active_mixup' reads the unlabeled set (data.train) once, unaugmented, and "
                              "augments its queried set itself: set augment=False on data.train's dataset")
        if split not in ("proportional", "equal"):
            raise ConfigError(f"strategy.split must be 'proportional' or 'equal'; got {split!r}")
        lambdas = [float(v) for v in lambdas]
        if not lambdas or not all(0.0 <= v <= 1.0 for v in lambdas):
            raise ConfigError(f"strategy.lambdas must be a non-empty list of mixing weights in [0, 1]; got {lambdas}")
        if int(rounds) < 0 or int(per_round) < 0 or not T > 0:
            raise ConfigError(f"strategy 'active_mixup' needs rounds >= 0, per_round >= 0, T > 0; got rounds={rounds}, "
                              f"per_round={per_round}, T={T}")
        self.lambdas, self.T, self.retrain, self.augment = lambdas, float(T), bool(retrain), bool(augment)
        self.rounds, self.per_round = int(rounds), int(per_round)
        self.pool_size = None if pool_size is None else int(pool_size)
        self.score_batch_size = int(score_batch_size)
        self.round_lr = dict(round_lr or dict(type="multistep", milestones=[0.4, 0.7, 0.9], gamma=0.1))
        LRSchedule(10, 1, **self._lr_kwargs(10))  # check the spec now
        self.seed = int(cfg.get("seed", 0))
        self.batch_size = int((cfg.get("data") or {}).get("batch_size", 64))
        self.device = torch.device("cpu")

        # -- the unlabeled set, once, without augmentation ------------------------------------------------
        key = ctx.student_input
        with forked_rng(self.seed):
            self.images = torch.stack([ctx.train_set[i][key] for i in range(len(ctx.train_set))]).float()
        self.n = n = self.images.shape[0]
        self.pool_total = pool_pairs(n)
        self.budget = n + self.rounds * self.per_round if budget is None else int(budget)
        if self.budget < n:
            raise ConfigError(f"strategy.budget={self.budget} is below the {n} queries of round 0 (the unlabeled set "
                              f"itself); raise it or use a smaller data.train")
        self.plan = self._plan()  # queries of rounds 1..R
        sizes = [n + sum(self.plan[:r]) for r in range(self.rounds + 1)]
        train = cfg.get("train", {}) or {}
        total = int(train["iters"]) if train.get("iters") else int(train.get("epochs", 1)) * int(ctx.iters_per_epoch)
        weights = sizes if split == "proportional" else [1] * len(sizes)
        cum = [sum(weights[:r]) for r in range(len(weights) + 1)]
        self.bounds = [round(total * c / cum[-1]) for c in cum]  # round r trains on [bounds[r], bounds[r + 1])

        # -- student, black-box teacher, optimiser ---------------------------------------------------------
        student = build_student(cfg, info=ctx.info, warn=ctx.warn)
        self.module = SoftTargetStudent(student, self.T)
        self.teacher = build_blackbox_teacher(cfg, ctx.synthetic, ctx.warn, ctx.calibration_batches,
                                              budget=self.budget, batch_size=query_batch_size)
        self.optimizer = build_optimizer(cfg.get("optimizer", dict(type="SGD", lr=0.1)), [self.module], named=student)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self._init_student = copy.deepcopy(student.state_dict())
        self._init_optimizer = copy.deepcopy(self.optimizer.state_dict())
        self.info = ctx.info

        # -- round state (checkpointed) --------------------------------------------------------------------
        self.round = -1
        self.unlabeled_probs: torch.Tensor | None = None
        self.mix_ids = torch.zeros(0, dtype=torch.long)
        self.mix_lam = torch.zeros(0, dtype=torch.long)
        self.mix_probs: torch.Tensor | None = None
        self.queries_by_round: list[int] = []
        self._perms: dict = {}

    # -- plan -----------------------------------------------------------------------------------------------
    def _plan(self) -> list[int]:
        left, pool, plan = self.budget - self.n, self.pool_total, []
        for _ in range(self.rounds):
            k = min(self.per_round, left, pool, pool if self.pool_size is None else self.pool_size)
            plan.append(k)
            left, pool = left - k, pool - k
        return plan

    def _lr_kwargs(self, length: int) -> dict:
        spec = dict(self.round_lr)
        unknown = set(spec) - {"type", "milestones", "gamma", "power", "min_lr_ratio"}
        if unknown:
            raise ConfigError(f"strategy.round_lr takes type, milestones (fractions of a round), gamma, power, "
                              f"min_lr_ratio; got {sorted(unknown)}")
        fractions = [float(m) for m in spec.get("milestones", ())]
        if not all(0 < m < 1 for m in fractions):
            raise ConfigError(f"strategy.round_lr.milestones are fractions of a round in (0, 1); got {fractions}")
        spec["milestones"] = [math.ceil(m * length) for m in fractions]
        return dict(spec, by_epoch=False)

    def round_of(self, it: int) -> int:
        """The round that main iteration ``it`` (0-based) trains in."""
        r = 0
        while r < self.rounds and it >= self.bounds[r + 1]:
            r += 1
        return r

    # -- rounds -----------------------------------------------------------------------------------------------
    def remaining_pool(self) -> torch.Tensor:
        mask = torch.ones(self.pool_total, dtype=torch.bool)
        mask[self.mix_ids.cpu()] = False
        return mask.nonzero().flatten()

    def candidates(self, r: int) -> torch.Tensor:
        """The pair ids scored before round ``r``: the remaining pool, or ``pool_size`` of them drawn by (seed, r)."""
        left = self.remaining_pool()
        if self.pool_size is not None and self.pool_size < left.numel():
            g = torch.Generator().manual_seed(mix_seed(self.seed, r, 11))
            left = left[torch.randperm(left.numel(), generator=g)[:self.pool_size]].sort().values
        return left

    def _advance(self, r: int) -> None:
        """Make round ``r``'s queries (``U`` itself for round 0) and, with ``retrain``, restart the student."""
        if r == 0:
            self.unlabeled_probs = self.teacher.query(self.images)
            self.mix_probs = self.unlabeled_probs.new_zeros((0, self.unlabeled_probs.shape[1]))
            self.queries_by_round = [self.n]
            self.info(f"active_mixup round 0: queried the {self.n} unlabeled images "
                      f"({self.teacher.queries}/{self.budget} queries)")
        else:
            k = self.plan[r - 1]
            cand = self.candidates(r)
            if k > 0:
                conf, lam_idx = score_pool(self.student, self.images, cand, self.lambdas, self.score_batch_size)
                pick = least_confident(conf, k)
                ids, lam = cand[pick], lam_idx[pick]
                lams = torch.tensor(self.lambdas)[lam]
                probs = self.teacher.query(mix_images(self.images, ids, lams))
                self.mix_ids = torch.cat([self.mix_ids, ids.to(self.mix_ids.device)])
                self.mix_lam = torch.cat([self.mix_lam, lam.to(self.mix_lam.device)])
                self.mix_probs = torch.cat([self.mix_probs, probs.to(self.mix_probs.device)])
                self.info(f"active_mixup round {r}: scored {cand.numel()} pairs x {len(self.lambdas)} lambdas, queried "
                          f"the {k} least confident (confidence {conf[pick].min():.3f}..{conf[pick].max():.3f}); "
                          f"queried set {self.n + self.mix_ids.numel()}, {self.teacher.queries}/{self.budget} queries")
            self.queries_by_round.append(k)
            if self.retrain:
                self.student.load_state_dict(self._init_student)
                self.optimizer.load_state_dict(self._init_optimizer)
        self.round = r
        self._perms = {}

    def _batch(self, r: int, pos: int, size: int) -> dict:
        """Batch ``pos`` of round ``r``: positions ``pos * size ...`` of the round's epoch-after-epoch permutations
        of the queried set (``U`` first, then the mixup images in query order)."""
        m = self.n + self.mix_ids.numel()
        q = torch.arange(pos * size, (pos + 1) * size)
        epochs, offsets = q // m, q % m
        idx = torch.empty(size, dtype=torch.long)
        for e in epochs.unique().tolist():
            if e not in self._perms:
                g = torch.Generator().manual_seed(mix_seed(self.seed, r, e))
                self._perms = {e: torch.randperm(m, generator=g), **{k: v for k, v in self._perms.items() if k > e - 2}}
            here = epochs == e
            idx[here] = self._perms[e][offsets[here]]
        idx = idx.to(self.device)
        real = idx < self.n
        x = torch.empty((len(idx),) + tuple(self.images.shape[1:]), dtype=self.images.dtype, device=self.device)
        p = torch.empty((len(idx), self.unlabeled_probs.shape[1]), device=self.device)
        x[real], p[real] = self.images[idx[real]], self.unlabeled_probs[idx[real]]
        mixed = idx[~real] - self.n
        if mixed.numel():
            lams = torch.tensor(self.lambdas)[self.mix_lam[mixed].cpu()]
            x[~real], p[~real] = mix_images(self.images, self.mix_ids[mixed], lams), self.mix_probs[mixed]
        if self.augment:
            x = random_crop_flip(x, torch.Generator().manual_seed(mix_seed(self.seed, r, pos, 7)))
        return {"image": x, "soft_target": p}

    # -- the strategy interface ------------------------------------------------------------------------------
    @property
    def student(self) -> nn.Module:
        return self.module.student

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"student": self.optimizer}

    def scheduled(self) -> list[str]:
        return []  # the strategy restarts the learning rate every round itself

    def train_step(self, batch: dict, step) -> dict[str, torch.Tensor] | None:
        r = self.round_of(step.iter)
        while self.round < r:
            self._advance(self.round + 1)
        start, end = self.bounds[r], self.bounds[r + 1]
        schedule = LRSchedule(max(end - start, 1), 1, **self._lr_kwargs(max(end - start, 1)))
        set_lr(self.optimizer, self.base_lrs, schedule.factor(step.iter - start))
        data = self._batch(r, step.iter - start, self.batch_size)  # the trainer's `batch` only counts iterations
        losses = step.forward_backward(data, self.optimizer)
        if losses is None:
            return None
        if step.step_now:
            step.optimizer_step(self.optimizer)
        return losses

    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.student}

    def to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        super().to(device, memory_format)
        self.device = torch.device(device)
        self.images = self.images.to(self.device)
        for name in ("unlabeled_probs", "mix_probs", "mix_ids", "mix_lam"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(self.device))

    def state_dict(self) -> dict:
        cpu = (lambda t: None if t is None else t.detach().cpu())
        return {"optimizer": self.optimizer.state_dict(), "round": self.round, "queries": self.teacher.queries,
                "queries_by_round": list(self.queries_by_round), "unlabeled_probs": cpu(self.unlabeled_probs),
                "mix_ids": cpu(self.mix_ids), "mix_lam": cpu(self.mix_lam), "mix_probs": cpu(self.mix_probs)}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.round = int(state["round"])
        self.teacher.queries = int(state["queries"])
        self.queries_by_round = list(state["queries_by_round"])
        dev = (lambda t: None if t is None else t.to(self.device))
        self.unlabeled_probs, self.mix_probs = dev(state["unlabeled_probs"]), dev(state["mix_probs"])
        self.mix_ids, self.mix_lam = dev(state["mix_ids"]), dev(state["mix_lam"])
        self._perms = {}

    def summary(self) -> dict:
        return {"rounds_done": self.round, "rounds": self.rounds, "queries": self.teacher.queries,
                "query_budget": self.budget, "queries_by_round": list(self.queries_by_round),
                "queried_set": self.n + int(self.mix_ids.numel()), "unlabeled": self.n, "pool_pairs": self.pool_total,
                "round_bounds": list(self.bounds)}
