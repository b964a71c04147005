"""The training loop: schedules, AMP, accumulation, clipping, DDP, evaluation, checkpoints, exact resume.

The trainer knows no method: a :mod:`strategy <densekd.strategies>` decides which models train, with which
optimisers, in which phases and how one step goes; the trainer runs the phases' iterations, sets the
scheduled learning rates, lends each step a :class:`~densekd.engine.step.Step` (AMP, accumulation, DDP sync,
clipping, finiteness), evaluates every model the strategy names, and checkpoints.

Internally every schedule is iteration-based; an epoch is ``len(train_loader)`` iterations. Position,
optimiser, scaler, RNG states, the best metric, the unfinished log window, skipped-step counts and the
training time are checkpointed so that ``--resume`` continues bit for bit on CPU. Checkpoint layout:
``model`` (the primary model's weights: what ``tools/test.py``, teachers and ``load_from`` read), ``models``
(every evaluated model's weights by name, when there are several), ``strategy`` (the strategy's own state:
loss parts, optimisers...), ``scaler``, ``rng``, ``iter``, ``phase_iters``, ``best``, ``config``.

Nothing is lost after start-up (see :mod:`densekd.engine.workdir` and :mod:`densekd.engine.failures`): the
work dir is locked and an earlier run in it is never overwritten without ``overwrite``; ``last.pth`` is
written before every evaluation; a failure writes its traceback to ``train.log``, saves ``last.pth`` when the
state is sound (at an iteration boundary, outside a training step), and re-raises with a one-line
description attached; ``resume`` refuses a changed config (:mod:`densekd.engine.resume`).
"""
from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from densekd.config import Config, ConfigError
from densekd.engine import distributed as dist
from densekd.engine.distributed import rank_synchronised_buffers
from densekd.engine.builder import (build_datasets, build_strategy, build_task, build_train_loader, build_val_loader,
                                    calibration_batches, strategy_config, with_teacher_cache)
from densekd.engine.checkpoint import (atomic_save, atomic_write_text, load_checkpoint, require_training_checkpoint,
                                       rng_state, set_rng_state)
from densekd.engine.evaluate import EvaluationInterrupted, run_evaluation, to_device
from densekd.engine.failures import attach, describe
from densekd.engine.optim import LRSchedule, set_lr
from densekd.engine.records import RunRecords
from densekd.engine.resume import config_drift, rewind_metrics
from densekd.engine.schema import ensure_valid
from densekd.engine.step import AMP_DTYPES, MAX_CONSECUTIVE_SKIPS, NonFiniteGuard, NonFiniteLossError, Step, amp_autocast, \
    check_finite_mode, loss_entries
from densekd.engine.workdir import WorkDirError, claim_work_dir
from densekd.strategies.base import BuildContext

__all__ = ["Trainer", "NonFiniteLossError", "seed_everything"]


COMPILE_KEYS = ("backend", "mode", "fullgraph", "dynamic", "options")


def compile_models(models: dict[str, torch.nn.Module], spec) -> list[str]:
    """``train.compile``: ``True`` or ``dict(backend=, mode=, fullgraph=, dynamic=, options=)`` (``torch.compile``'s
    arguments) compiles, in place (``nn.Module.compile``: parameter names and checkpoints unchanged, forward
    hooks and so the taps kept), every model the strategy trains and evaluates (the student; the cohort of
    mutual learning). Teachers and loss modules stay eager. Returns the names compiled."""
    if not spec:
        return []
    kwargs = {} if spec is True else dict(spec)
    unknown = sorted(set(kwargs) - set(COMPILE_KEYS))
    if unknown or not isinstance(spec, (bool, dict)):
        raise ValueError(f"train.compile must be True or a dict of {', '.join(COMPILE_KEYS)}; got {spec!r}")
    for model in models.values():
        model.compile(**kwargs)
    return list(models)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Build everything from a config and train.

    Args:
        cfg: a loaded :class:`~densekd.config.Config` (validated here unless already validated).
        work_dir: where records and checkpoints go. It is locked while this trainer lives (a second run on it
            fails at once); a folder holding an earlier run is refused unless ``resume`` or ``overwrite``.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        synthetic: the config's datasets were replaced by stand-ins (missing teacher
            checkpoints become warnings).
        resume: continue from ``work_dir/checkpoints/last.pth`` (refused when the config differs from the
            checkpoint's, except for the keys of :data:`densekd.engine.resume.SAFE_ON_RESUME`).
        max_iters: stop after this many training iterations, then evaluate and summarise; the
            learning-rate schedule is the config's, unchanged. Iterations of a strategy's earlier phases
            (the AB/FT/FSP initialisation stage) count first, so a short smoke run may end inside one.
        overwrite: delete an earlier run's checkpoints and records in ``work_dir`` and start afresh.
    """

    def __init__(self, cfg: Config, work_dir: str | Path, device: str = "auto", synthetic: bool = False,
                 resume: bool = False, max_iters: int | None = None, overwrite: bool = False):
        ensure_valid(cfg)
        if max_iters is not None and int(max_iters) < 0:
            raise ValueError(f"max_iters (--max-iters) must be >= 0; got {max_iters}")
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.device = dist.setup(device)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.records: RunRecords | None = None
        self._lock = None
        self._claim(resume, overwrite)
        try:
            self._build(cfg, synthetic, resume, max_iters)
        except BaseException:
            self.close()
            raise

    def _claim(self, resume: bool, overwrite: bool) -> None:
        """Lock the work dir and check that this run may write there (on rank 0; every rank learns the answer)."""
        error = None
        if dist.is_main():
            try:
                self._lock = claim_work_dir(self.work_dir, resume=resume, overwrite=overwrite)
            except WorkDirError as exc:
                error = exc
        if self.world > 1:
            shared = dist.broadcast_object(None if error is None else (str(error), error.kind))
            if shared is not None and error is None:
                error = WorkDirError(*shared)
        if error is not None:
            raise error

    def _build(self, cfg: Config, synthetic: bool, resume: bool, max_iters: int | None) -> None:
        ckpt, notes = (self._read_resume_checkpoint() if resume else (None, []))
        if dist.is_main():
            if ckpt is not None:
                dropped = rewind_metrics(self.work_dir / "metrics.jsonl", ckpt)
                if dropped:
                    notes.append(f"metrics.jsonl: dropped {dropped} records written after the checkpoint (iteration "
                                 f"{ckpt['iter']}); the resumed run writes them again")
            atomic_write_text(cfg.dump(), self.work_dir / "config.py")
        self.records = RunRecords(self.work_dir, enabled=dist.is_main())
        for note in notes:
            self.records.warning(note)
        self.max_iters = max_iters
        self.synthetic = synthetic
        tcfg = dict(cfg.get("train", {}))
        self.tcfg = tcfg
        self.seed = int(cfg.get("seed", 0))
        seed_everything(self.seed)
        if cfg.get("deterministic"):
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        on_cuda = self.device.type == "cuda"

        # -- data -------------------------------------------------------------
        self.train_set, self.val_set = build_datasets(cfg)
        self.train_set = with_teacher_cache(cfg, self.train_set)
        self.task = build_task(cfg, self.train_set)
        self.train_loader = build_train_loader(cfg, self.train_set, self.seed, self.rank, self.world, on_cuda)
        self.batch_per_rank = self.train_loader.batch_sampler.batch_size
        self.val_loader = None if self.val_set is None else \
            build_val_loader(cfg, self.val_set, self.rank, self.world, on_cuda, seed=self.seed)
        self.iters_per_epoch = len(self.train_loader)
        asked = int((cfg.get("data") or {}).get("num_workers", 0))
        if asked > self.train_loader.num_workers:
            self.records.info(f"data.num_workers={asked}: using {self.train_loader.num_workers} loader processes "
                              f"(the cores this process may use)")

        # -- strategy: models, teachers, optimisers ------------------------------
        ctx = BuildContext(cfg=cfg, task=self.task, train_set=self.train_set, iters_per_epoch=self.iters_per_epoch,
                           synthetic=synthetic, warn=self.records.warning, calibration_batches=self._calibration_batches,
                           info=self.records.info)
        self.strategy = build_strategy(cfg, ctx)
        self.student_input = ctx.student_input
        self.channels_last = bool(tcfg.get("channels_last", False)) and on_cuda
        if tcfg.get("sync_bn") and self.world > 1 and on_cuda:
            dist.convert_sync_batchnorm(self.strategy.module)
        self.strategy.to(self.device, torch.channels_last if self.channels_last else None)
        self.compiled = compile_models(self.strategy.eval_models(), tcfg.get("compile"))
        self.model = self.strategy.module
        if self.world > 1:
            find_unused = tcfg.get("find_unused_parameters")
            if find_unused is None:
                find_unused = self.strategy.has_idle_parameters()
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.strategy.module, rank_synchronised_buffers(self.strategy.module))
            self.model = DistributedDataParallel(self.strategy.module, device_ids=[self.device.index] if on_cuda else None,
                                                 find_unused_parameters=find_unused)

        # -- optimisation -----------------------------------------------------
        self.amp = tcfg.get("amp") or None
        if self.amp and self.amp not in AMP_DTYPES:
            raise ValueError(f"train.amp must be None, 'bf16' or 'fp16'; got {self.amp!r}")
        if self.amp and not on_cuda:
            self.records.warning(f"train.amp={self.amp!r} applies on CUDA only; training in fp32 on {self.device}")
            self.amp = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        optimizers = self.strategy.optimizers()
        self.optimizer_names = {id(opt): name for name, opt in optimizers.items()}
        self.scheduled = {name: (optimizers[name], [g["lr"] for g in optimizers[name].param_groups])
                          for name in self.strategy.scheduled()}
        if tcfg.get("iters"):
            self.total_iters, self.by_epoch = int(tcfg["iters"]), False
        else:
            self.total_iters, self.by_epoch = int(tcfg.get("epochs", 1)) * self.iters_per_epoch, True
        sched = dict(cfg.get("lr_schedule", dict(type="constant")))
        sched.setdefault("by_epoch", self.by_epoch)
        self.schedule = LRSchedule(self.total_iters, self.iters_per_epoch, **sched)
        self.accumulate = int(tcfg.get("accumulate", 1))
        self.grad_clip = tcfg.get("grad_clip")
        self.skip_nonfinite = bool(tcfg.get("skip_nonfinite", False))
        self.check_finite = check_finite_mode(str(tcfg.get("check_finite", "auto")), on_cuda, self.skip_nonfinite)
        self.guard = NonFiniteGuard(self.skip_nonfinite, int(tcfg.get("max_consecutive_skips") or MAX_CONSECUTIVE_SKIPS),
                                    deferred=self.check_finite == "interval")
        self.log_interval = int(tcfg.get("log_interval", 50))
        unit = self.iters_per_epoch if self.by_epoch else 1
        self.eval_every = int(tcfg.get("eval_interval", 1 if self.by_epoch else 1000)) * unit
        self.ckpt_every = int(tcfg.get("checkpoint_interval", tcfg.get("eval_interval", 1 if self.by_epoch else 1000))) * unit
        self.phases = self.strategy.phases()

        # -- state --------------------------------------------------------------
        self.iter = 0
        self.phase_iters = {p.name: 0 for p in self.phases}
        self.best: dict[str, float] = {}
        self.best_iter = None
        self.final: dict[str, float] = {}
        self.models_final: dict[str, dict] = {}
        self.models_best: dict[str, dict] = {}
        self.last_eval_iter = None
        self._stop_signal = None
        self._window: dict[str, list[torch.Tensor]] = {}  # losses since the last log line
        self._elapsed_before = 0.0  # training seconds of earlier sessions (resume)
        self._session_start = time.time()
        self._sessions = 1
        self._activity: tuple[str, str] = ("start", "")  # what the run is doing: for failure reports
        self._last_saved: tuple[Path, int] | None = None
        if ckpt is not None:
            self._restore(ckpt, self.ckpt_dir / "last.pth")

    def _calibration_batches(self, n: int = 4):
        """A few training batches (outside the training order's RNG) for calibrating untrained teachers."""
        return calibration_batches(self.train_set, self.batch_per_rank, self.seed, n)

    def close(self) -> None:
        """Close the records and release the work dir (done by :meth:`train`; idempotent)."""
        if self.records is not None:
            self.records.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- checkpoints ------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.time() - self._session_start)

    def state_dict(self) -> dict:
        models = self.strategy.eval_models()
        state = {
            "model": self.strategy.primary_model.state_dict(),
            "strategy": self.strategy.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "iter": self.iter, "phase_iters": dict(self.phase_iters),
            "best": self.best, "best_iter": self.best_iter, "last_eval_iter": self.last_eval_iter,
            "models_best": self.models_best,
            "config": self.cfg.dump(), "world_size": self.world,
            "log_window": {k: torch.stack(v).detach().cpu() for k, v in self._window.items()},
            "nonfinite": self.guard.state_dict(),
            "elapsed_s": self._elapsed(), "sessions": self._sessions,
        }
        if len(models) > 1:
            state["models"] = {name: m.state_dict() for name, m in models.items()}
        return state

    def _check_deferred(self) -> None:
        """Wait for the deferred finiteness checks (``train.check_finite='interval'``); on failure the run stops
        with the state marked unsound, so nothing is saved from it."""
        if self.guard.deferred:
            previous = self._activity
            self._activity = ("step", "in the training steps since the last finiteness check")
            self.guard.flush(self.world)
            self._activity = previous

    def save(self, name: str = "last.pth") -> None:
        self._check_deferred()  # never a checkpoint of weights that may hold non-finite values
        previous = self._activity
        self._activity = ("save", f"while writing {self.ckpt_dir / name}")
        if dist.is_main():
            atomic_save(self.state_dict(), self.ckpt_dir / name)
            if name == "last.pth":
                self._last_saved = (self.ckpt_dir / name, self.iter)
        dist.barrier()
        self._activity = previous

    def _read_resume_checkpoint(self) -> tuple[dict, list[str]]:
        """``last.pth`` checked to be a densekd training checkpoint of the same config, and the warnings for
        keys that changed safely. Nothing is written before this check."""
        path = self.ckpt_dir / "last.pth"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
        ckpt = require_training_checkpoint(load_checkpoint(path, map_location=self.device), path)
        refused, warned = config_drift(ckpt.get("config"), self.cfg)
        if refused:
            raise ConfigError(
                f"--resume: the config differs from the one {path} was trained with in {len(refused)} key(s): "
                f"{'; '.join(refused[:8])}{'; ...' if len(refused) > 8 else ''}. Resuming would not continue the "
                f"same run: resume with the original settings (the run's config.py records them), or start a new "
                f"run with another --work-dir (load_from={str(path)!r} starts it from these weights)")
        notes = [f"Resuming with changed {', '.join(warned)} (safe to change on resume)"] if warned else []
        return ckpt, notes

    def _restore(self, ckpt: dict, path: Path) -> None:
        models = self.strategy.eval_models()
        if len(models) > 1:
            for name, m in models.items():
                m.load_state_dict(ckpt["models"][name])
        else:
            self.strategy.primary_model.load_state_dict(ckpt["model"])
        self.strategy.load_state_dict(ckpt["strategy"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.iter = ckpt["iter"]
        self.phase_iters.update({k: v for k, v in ckpt.get("phase_iters", {}).items() if k in self.phase_iters})
        self.best, self.best_iter = ckpt["best"], ckpt["best_iter"]
        self.models_best = ckpt.get("models_best", {})
        self.last_eval_iter = ckpt.get("last_eval_iter")
        self._window = {k: [t.to(self.device) for t in v] for k, v in (ckpt.get("log_window") or {}).items()}
        self.guard.load_state_dict(ckpt.get("nonfinite") or {})
        self._elapsed_before = float(ckpt.get("elapsed_s", 0.0))
        self._sessions = int(ckpt.get("sessions", 1)) + 1
        self._last_saved = (path, self.iter)
        phases = "".join(f" ({p.name} phase {self.phase_iters[p.name]}/{p.iters})" for p in self.phases)
        self.records.info(f"Resumed from {path} at iteration {self.iter}{phases}")

    def resume(self) -> None:
        """Continue from ``checkpoints/last.pth`` (what ``resume=True`` does at construction)."""
        ckpt, notes = self._read_resume_checkpoint()
        for note in notes:
            self.records.warning(note)
        self._restore(ckpt, self.ckpt_dir / "last.pth")

    # -- signals -------------------------------------------------------------------
    @contextlib.contextmanager
    def _signals(self):
        def handler(signum, _frame):
            self._stop_signal = signum

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread
                pass
        try:
            yield
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self._stop_signal else 0.0])
        if self.world > 1:  # every process stops at the same iteration; a host-side all-reduce, no GPU wait
            flag = dist.all_reduce_host(flag)
        return bool(flag.item())

    # -- steps -------------------------------------------------------------------------
    def _autocast(self):
        return amp_autocast(self.device, self.amp)

    def _step(self, phase: str, it: int, step_now: bool) -> Step:
        return Step(phase=phase, iter=it, epoch=it / self.iters_per_epoch, step_now=step_now, model=self.model,
                    world=self.world, accumulate=self.accumulate if phase == "main" else 1, scaler=self.scaler,
                    amp=self.amp, device=self.device, grad_clip=self.grad_clip,
                    skip_nonfinite=self.skip_nonfinite, warn=self.records.warning, guard=self.guard,
                    optimizer_names=self.optimizer_names)

    def train_iteration(self, batch: dict) -> dict[str, torch.Tensor] | None:
        """One main-schedule iteration on ``batch``: set the scheduled learning rates, run the strategy's
        step, advance ``iter``. Returns the logged losses (``loss`` and ``loss/<term>``) or None if skipped."""
        factor = self.schedule.factor(self.iter)
        for opt, base in self.scheduled.values():
            set_lr(opt, base, factor)
        step_now = (self.iter + 1) % self.accumulate == 0 or self.iter + 1 == self.total_iters
        losses = self.strategy.train_step(batch, self._step("main", self.iter, step_now))
        self.iter += 1
        self.guard.end_iteration("main", step_now)
        return None if losses is None else loss_entries(losses)

    @property
    def lr(self) -> float:
        """The current learning rate of the strategy's first scheduled optimiser (its first optimiser when it
        schedules none: a strategy that sets its learning rates itself)."""
        for opt, _ in self.scheduled.values():
            return float(opt.param_groups[0]["lr"])
        for opt in self.strategy.optimizers().values():
            return float(opt.param_groups[0]["lr"])
        return float("nan")

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict[str, dict[str, float]]:
        """Metrics of every model the strategy evaluates, by model name. In a single process a stop signal
        interrupts the evaluation (:class:`~densekd.engine.evaluate.EvaluationInterrupted`)."""
        if self.val_loader is None:
            return {}
        should_stop = (lambda: self._stop_signal is not None) if self.world == 1 else None
        return {name: run_evaluation(model, self.task, self.val_loader, self.device, self._autocast,
                                     self.channels_last, self.student_input, should_stop=should_stop)
                for name, model in self.strategy.eval_models().items()}

    def _eval_due(self, it: int) -> bool:
        return it > 0 and (it % self.eval_every == 0 or it == self.total_iters)

    def _eval_point(self) -> dict[str, float]:
        """``last.pth``, the evaluation, ``last.pth`` again: a failing or interrupted evaluation loses no
        training, and ``--resume`` from the first save evaluates again."""
        self.save()
        metrics = self._evaluate_and_record()
        self.save()
        return metrics

    def _evaluate_and_record(self) -> dict[str, float]:
        self._activity = ("eval", f"during the evaluation at iteration {self.iter}")
        per_model = self.evaluate()
        self._activity = ("boundary", f"after the evaluation at iteration {self.iter}")
        self.last_eval_iter = self.iter
        if not any(per_model.values()):  # no validation set, or a task without metrics
            return {}
        names = list(per_model)
        metrics = per_model[names[0]]
        self.final = metrics
        key = self.task.primary_metric
        for name, m in per_model.items():
            self.models_final[name] = m
            if self.task.is_better(m[key], self.models_best.get(name, {}).get(key)):
                self.models_best[name] = dict(m, iter=self.iter)
        epoch = self.iter / self.iters_per_epoch
        entry = {"iter": self.iter, "epoch": round(epoch, 4), "split": "val", **metrics}
        for name in names[1:]:
            entry.update({f"{name}/{k}": v for k, v in per_model[name].items()})
        self.records.record(entry)
        if self.task.is_better(metrics[key], self.best.get(key)):
            self.best, self.best_iter = dict(metrics), self.iter
            self.save("best.pth")
        for i, name in enumerate(names):
            shown = ", ".join(f"{k} {per_model[name][k]:.2f}" for k in self.task.metrics if k in per_model[name])
            who = f" {name}" if len(names) > 1 else ""
            best = f" (best {key} {self.best[key]:.2f} @ iter {self.best_iter})" if i == 0 else ""
            self.records.info(f"[val]{who} iter {self.iter} epoch {epoch:.2f}: {shown}{best}")
        return metrics

    # -- loops ------------------------------------------------------------------------------
    def batches(self, start: int):
        """Batches from iteration ``start`` on, epoch after epoch (resumable mid-epoch), on the device."""
        from densekd.data.sampling import device_step

        step = device_step(self.train_set)
        it = start
        while True:
            epoch, offset = divmod(it, self.iters_per_epoch)
            self.train_loader.batch_sampler.set_epoch(epoch, offset)
            for batch in self.train_loader:
                yield to_device(batch, self.device, self.channels_last, step)
                it += 1

    def _run_phase(self, name: str, total: int, limit: int) -> bool:
        """A strategy phase before the main schedule, up to ``limit`` iterations. False if stopped by a signal."""
        if self.phase_iters[name] >= limit:
            return True
        self.records.info(f"Phase {name!r} of {type(self.strategy).__name__}: {total} iterations")
        self.strategy.train()
        batches = self.batches(self.phase_iters[name])
        while self.phase_iters[name] < limit:
            n = self.phase_iters[name]
            self._activity = ("data", f"loading a batch of {name} iteration {n + 1}")
            batch = next(batches)
            self._activity = ("step", f"in the training step of {name} iteration {n + 1}")
            losses = self.strategy.train_step(batch, self._step(name, n, True))
            self.phase_iters[name] = n = n + 1
            self.guard.end_iteration(name, True)
            self._activity = ("boundary", f"after {name} iteration {n}")
            self.guard.check_limit()
            if n % self.log_interval == 0 or n == total:
                self._check_deferred()
            if losses and (n % self.log_interval == 0 or n == total):
                self.records.record({f"{name}_iter": n, **{f"loss/{k}": v for k, v in losses.items()}})
                self.records.info(f"[{name}] {n}/{total} " + " ".join(f"{k} {v.item():.4g}" for k, v in losses.items()))
            if self._should_stop():
                return False
            if n % self.iters_per_epoch == 0:
                self.save()
        self.strategy.phase_finished(name)
        return True

    def train(self) -> dict:
        """Run the strategy's phases and the main schedule (or ``max_iters`` of them); returns the summary.

        A failure writes its traceback to ``train.log``, saves ``last.pth`` when the state is sound and
        re-raises the exception with a :class:`~densekd.engine.failures.Failure` attached (the tools print
        its one line). The work dir is released at the end, however the run ends."""
        self._session_start = time.time()
        try:
            return self._train()
        except Exception as exc:
            self._report_failure(exc)
            raise
        finally:
            self.close()

    def _train(self) -> dict:
        budget = self.max_iters
        limits = {}
        for p in self.phases:  # one budget over all phases, the earlier phases first
            limits[p.name] = p.iters if budget is None else min(p.iters, budget)
            budget = None if budget is None else max(budget - limits[p.name], 0)
        stop_at = self.total_iters if budget is None else min(self.total_iters, budget)
        self.records.info(f"Training {type(self.strategy.primary_model).__name__} ({type(self.strategy).__name__}) on "
                          f"{self.device} x{self.world}: {self.total_iters} iterations ({self.iters_per_epoch}/epoch), "
                          f"stopping at {stop_at}; work dir {self.work_dir}")
        interrupted, saved = False, False
        with self._signals():
            try:
                for p in self.phases:
                    if not self._run_phase(p.name, p.iters, limits[p.name]):
                        interrupted = True
                        break
                if not interrupted and all(self.phase_iters[p.name] >= p.iters for p in self.phases):
                    interrupted = self._main_loop(stop_at)
                if not interrupted:
                    if self.last_eval_iter != self.iter:
                        self._eval_point()
                    else:
                        self.save()
            except EvaluationInterrupted:
                interrupted, saved = True, True  # last.pth was written just before the evaluation
        if interrupted:
            if not saved:
                self.save()
            name = signal.Signals(self._stop_signal).name
            during = " during the evaluation (it runs again on --resume)" if saved else ""
            self.records.info(f"Stopped by {name} at iteration {self.iter}{during}; checkpoint saved to "
                              f"{self.ckpt_dir / 'last.pth'}. Continue with --resume.")
            raise SystemExit(128 + int(self._stop_signal))
        self._activity = ("boundary", "while writing summary.json")
        summary = self.summary(self._elapsed())
        self.records.write_json("summary.json", summary)
        return summary

    def _main_loop(self, stop_at: int) -> bool:
        self.strategy.train()
        if self.tcfg.get("eval_first") and self.iter == 0 and self.last_eval_iter is None:
            self._eval_point()
        elif self._eval_due(self.iter) and self.last_eval_iter != self.iter:
            self._eval_point()  # resumed from the checkpoint written before an evaluation that did not finish
        self.records.start_progress(stop_at, self.iter, "train")
        batches = self.batches(self.iter)
        while self.iter < stop_at:
            self._activity = ("data", f"loading the batch of iteration {self.iter + 1}")
            batch = next(batches)
            self._activity = ("step", f"in the training step of iteration {self.iter + 1}")
            losses = self.train_iteration(batch)
            self._activity = ("boundary", f"after iteration {self.iter}")
            self.guard.check_limit()
            lr = self.lr
            if losses is not None:
                for k, v in losses.items():
                    self._window.setdefault(k, []).append(v)
            self.records.advance()  # no read-back per step: the bar shows the loss of the last log line
            if self.iter % self.log_interval == 0 or self.iter == stop_at:
                self._check_deferred()
                self._log_window(lr)
            if self._eval_due(self.iter):
                self._eval_point()
            elif self.iter % self.ckpt_every == 0:
                self.save()
            # stop only between accumulation windows: a checkpoint holds no half-accumulated gradients
            if (self.iter % self.accumulate == 0 or self.iter == stop_at) and self._should_stop():
                self.records.stop_progress()
                return True
        self.records.stop_progress()
        return False

    def _log_window(self, lr: float) -> None:
        window, self._window = self._window, {}
        if not window:
            return
        keys = sorted(window)
        means = torch.stack([torch.stack(window[k]).float().mean() for k in keys])
        means = dist.all_reduce_mean(means.to(self.device)).cpu() if self.world > 1 else means.cpu()
        entry = {"iter": self.iter, "epoch": round(self.iter / self.iters_per_epoch, 4), "lr": lr,
                 **{k: float(v) for k, v in zip(keys, means)}}
        self.records.record(entry)
        if "loss" in entry:
            self.records.set_postfix({"loss": entry["loss"]})
        terms = " ".join(f"{k} {entry[k]:.4g}" for k in keys)
        self.records.info(f"iter {self.iter}/{self.total_iters} epoch {entry['epoch']:.2f} lr {lr:.4g} {terms}")

    # -- failures ------------------------------------------------------------------------------
    def _state_is_sound(self, kind: str) -> bool:
        """The models, optimisers and RNGs are those of an iteration boundary with no half-accumulated
        gradients (failures while loading a batch, evaluating or recording; not inside a training step)."""
        if kind not in ("data", "boundary"):
            return False
        in_main = all(self.phase_iters[p.name] >= p.iters for p in self.phases)
        return not in_main or self.iter % self.accumulate == 0

    def _report_failure(self, exc: BaseException) -> None:
        kind, where = self._activity
        failure = describe(exc, where or "at start")
        last = self.ckpt_dir / "last.pth"
        if kind == "eval":
            failure.state = f"{last} (iteration {self.iter}) was written before the evaluation; --resume evaluates again"
        elif self._state_is_sound(kind) and dist.is_main() and self.world == 1:
            try:
                self.save()
                failure.state = f"Saved {last} at iteration {self.iter}"
            except Exception as save_exc:  # noqa: BLE001 - e.g. the disk is still full
                failure.state = f"Could not save {last} ({type(save_exc).__name__}: {save_exc}); " + self._last_good()
        else:
            failure.state = self._last_good()
        if self._last_saved is None and not last.is_file():
            failure.fix = (failure.fix.replace("continue with --resume", "start the run again with --overwrite")
                           if failure.fix else "")
        self._activity = ("failed", where)
        if self.records is not None:
            failure.log = self.records.exception(failure.line(), exc)
        attach(exc, failure)

    def _last_good(self) -> str:
        if self._last_saved is not None:
            path, it = self._last_saved
            return f"The last good checkpoint {path} (iteration {it}) is intact"
        if (self.ckpt_dir / "last.pth").is_file():
            return f"The last good checkpoint {self.ckpt_dir / 'last.pth'} is intact"
        return "No checkpoint was written yet"

    def summary(self, seconds: float) -> dict[str, Any]:
        out = {
            "final": self.final, "best": self.best, "best_iter": self.best_iter,
            "primary_metric": self.task.primary_metric,
            "iters": self.iter, "total_iters": self.total_iters, "epochs": self.iter / self.iters_per_epoch,
            "completed": self.iter >= self.total_iters, "max_iters": self.max_iters,
            "config": self.cfg.filename, "work_dir": str(self.work_dir), "world_size": self.world,
            "device": str(self.device), "synthetic": self.synthetic, "seed": self.seed,
            "time_s": round(seconds, 2), "time_s_session": round(time.time() - self._session_start, 2),
            "sessions": self._sessions,
            "strategy": strategy_config(self.cfg)["type"],
            "check_finite": self.check_finite, "compiled": self.compiled,
        }
        out["phase_iters"] = dict(self.phase_iters)
        for p in self.phases:
            out[f"{p.name}_iters"], out[f"{p.name}_total"] = self.phase_iters[p.name], p.iters
        names = list(self.strategy.eval_models())
        if len(names) > 1:
            out["models"] = {n: {"final": self.models_final.get(n, {}), "best": self.models_best.get(n, {})}
                             for n in names}
        out.update(self.guard.summary())
        out.update(self.strategy.summary())
        cost = self.model_cost()
        if cost:
            out["cost"] = cost
        return out

    def model_cost(self) -> dict:
        """Parameters and FLOPs of the primary model's eval-mode forward pass on one validation sample (batch 1;
        :func:`densekd.engine.profile.inference_cost`, counted on the meta device), computed once; ``{}`` when it
        cannot be computed (it never stops a run)."""
        if getattr(self, "_cost", None) is None:
            self._cost = {}
            try:
                from densekd.data.sampling import forked_rng
                from densekd.engine.profile import inference_cost

                dataset = self.val_set if self.val_set is not None else self.train_set
                with forked_rng(0):
                    x = dataset[0][self.student_input]
                c = inference_cost(self.strategy.primary_model, x[None])
                self._cost = dict(params=c["params"], params_total=c["params_total"], flops=c["flops"],
                                  input_shape=c["input_shape"], counter="torch.utils.flop_counter.FlopCounterMode")
            except Exception as exc:  # noqa: BLE001 - a cost estimate is never worth a failed run
                self.records.info(f"model cost not computed ({type(exc).__name__}: {str(exc)[:160]})")
        return self._cost
