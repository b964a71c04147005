"""The training loop: schedules, AMP, accumulation, clipping, DDP, evaluation, exact resume.

Internally every schedule is iteration-based; an epoch is ``len(train_loader)``
iterations. Position, optimiser, scaler, RNG states and the best metric are
checkpointed so that ``--resume`` continues bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from densekd.config import Config
from densekd.data.sampling import build_loader
from densekd.distill.distiller import Distiller
from densekd.engine import distributed as dist
from densekd.engine.builder import (build_datasets, build_model, build_task, build_teachers, calibrate_batchnorm,
                                    probe_images)
from densekd.engine.evaluate import run_evaluation, to_device
from densekd.engine.checkpoint import atomic_save, atomic_write_text, load_checkpoint, rng_state, set_rng_state
from densekd.engine.optim import LRSchedule, build_optimizer, set_lr
from densekd.engine.records import RunRecords
from densekd.engine.schema import validate

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(FloatingPointError):
    pass


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Build everything from a config and train.

    Args:
        cfg: a loaded :class:`~densekd.config.Config` (validated here).
        work_dir: where records and checkpoints go.
        device: ``'cpu'``, ``'cuda'`` or ``'auto'``.
        synthetic: the config's datasets were replaced by stand-ins (missing teacher
            checkpoints become warnings).
        resume: continue from ``work_dir/checkpoints/last.pth``.
        max_iters: stop after this many training iterations, then evaluate and summarise; the
            learning-rate schedule is the config's, unchanged. Iterations of an initialisation
            stage (AB/FT/FSP) count first, so a short smoke run may end inside that stage.
    """

    def __init__(self, cfg: Config, work_dir: str | Path, device: str = "auto", synthetic: bool = False,
                 resume: bool = False, max_iters: int | None = None):
        validate(cfg)
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.device = dist.setup(device)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.records = RunRecords(self.work_dir, enabled=dist.is_main())
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
        if dist.is_main():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(cfg.dump(), self.work_dir / "config.py")

        # -- data -------------------------------------------------------------
        self.task = build_task(cfg)
        self.train_set, self.val_set = build_datasets(cfg)
        data = cfg.get("data", {})
        global_batch = int(data.get("batch_size", 64))
        if global_batch % self.world:
            raise ValueError(f"data.batch_size={global_batch} is the global batch and must divide by the "
                             f"{self.world} processes")
        self.batch_per_rank = global_batch // self.world
        loader_kw = dict(seed=self.seed, rank=self.rank, world_size=self.world,
                         num_workers=int(data.get("num_workers", 0)),
                         pin_memory=bool(data.get("pin_memory", self.device.type == "cuda")))
        self.train_loader = build_loader(self.train_set, self.batch_per_rank, shuffle=True,
                                         drop_last=bool(data.get("drop_last", False)), train=True, **loader_kw)
        self.val_loader = None
        if self.val_set is not None:
            val_batch = int(data.get("val_batch_size", global_batch)) // self.world or 1
            self.val_loader = build_loader(self.val_set, val_batch, shuffle=False, train=False, **loader_kw)

        # -- models -----------------------------------------------------------
        self.student = build_model(cfg["model"])
        teachers, inputs, untrained = build_teachers(cfg, synthetic, warn=self.records.warning)
        for teacher, key, random_init in zip(teachers, inputs, untrained):
            if random_init:
                calibrate_batchnorm(teacher, self._calibration_batches(), key)
        self.distiller = Distiller(self.student, self.task, teachers, cfg.get("distill", []),
                                   task_weight=float(cfg.get("task_weight", 1.0)),
                                   probe=probe_images(self.train_set) if cfg.get("distill") else None,
                                   num_classes=getattr(self.train_set, "num_classes", None),
                                   num_data=len(self.train_set), teacher_inputs=inputs)
        on_cuda = self.device.type == "cuda"
        self.channels_last = bool(tcfg.get("channels_last", False)) and on_cuda
        fmt = torch.channels_last if self.channels_last else None
        if tcfg.get("sync_bn") and self.world > 1 and on_cuda:
            self.distiller = nn.SyncBatchNorm.convert_sync_batchnorm(self.distiller)
            self.student = self.distiller.student
        self.distiller.to(self.device)
        if fmt is not None:
            self.distiller.to(memory_format=fmt)
        self.distiller.teachers_to(self.device, fmt)
        self.model: nn.Module = self.distiller
        if self.world > 1:
            find_unused = tcfg.get("find_unused_parameters")
            if find_unused is None:  # parts idle in the main stage (init-stage parts, frozen paraphrasers)
                find_unused = bool(self.distiller.init_terms() or self.distiller.separate_parameters())
            self.model = DistributedDataParallel(self.distiller, device_ids=[self.device.index] if on_cuda else None,
                                                 find_unused_parameters=find_unused)

        # -- optimisation -----------------------------------------------------
        self.amp = tcfg.get("amp") or None
        if self.amp and self.amp not in AMP_DTYPES:
            raise ValueError(f"train.amp must be None, 'bf16' or 'fp16'; got {self.amp!r}")
        if self.amp and not on_cuda:
            self.records.warning(f"train.amp={self.amp!r} applies on CUDA only; training in fp32 on {self.device}")
            self.amp = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == "fp16")
        separate = {id(p) for p in self.distiller.separate_parameters()}
        self.optimizer = build_optimizer(cfg.get("optimizer", dict(type="SGD", lr=0.1)), [self.distiller], separate)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.d_optimizers = {name: [m.build_d_optimizer() for m in mods]
                             for name, mods in self.distiller.adversarial_modules().items()}
        self.d_base_lrs = {name: [[g["lr"] for g in o.param_groups] for o in opts]
                           for name, opts in self.d_optimizers.items()}  # decayed by the student's schedule
        self.iters_per_epoch = len(self.train_loader)
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
        self.log_interval = int(tcfg.get("log_interval", 50))
        unit = self.iters_per_epoch if self.by_epoch else 1
        self.eval_every = int(tcfg.get("eval_interval", 1 if self.by_epoch else 1000)) * unit
        self.ckpt_every = int(tcfg.get("checkpoint_interval", tcfg.get("eval_interval", 1 if self.by_epoch else 1000))) * unit

        # -- initialisation stage (AB / FT / FSP) ------------------------------
        self.init_total = 0
        self.init_optimizer = None
        if self.distiller.init_terms() and int(tcfg.get("init_epochs", 30)) > 0:
            self.init_total = int(tcfg.get("init_epochs", 30)) * self.iters_per_epoch
            ocfg = dict(cfg.get("optimizer", {}))
            self.init_optimizer = torch.optim.SGD(self.distiller.init_parameters(),
                                                  lr=float(tcfg.get("init_lr", ocfg.get("lr", 0.05))),
                                                  momentum=ocfg.get("momentum", 0.9),
                                                  weight_decay=ocfg.get("weight_decay", 0.0))

        # -- state --------------------------------------------------------------
        self.iter = 0
        self.init_iter = 0
        self.best: dict[str, float] = {}
        self.best_iter = None
        self.final: dict[str, float] = {}
        self.last_eval_iter = None
        self._stop_signal = None
        if resume:
            self.resume()

    def _calibration_batches(self, n: int = 4):
        """A few training batches (outside the training order's RNG) for calibrating untrained teachers."""
        from densekd.data.sampling import forked_rng

        size = min(len(self.train_set), self.batch_per_rank)
        with forked_rng(self.seed + 1):
            for b in range(n):
                items = [self.train_set[(b * size + i) % len(self.train_set)] for i in range(size)]
                yield torch.utils.data.default_collate(items)

    # -- checkpoints ------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.work_dir / "checkpoints"

    def state_dict(self) -> dict:
        return {
            "model": self.student.state_dict(),
            "distill": self.distiller.distill_state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "d_optimizers": {k: [o.state_dict() for o in v] for k, v in self.d_optimizers.items()},
            "init_optimizer": self.init_optimizer.state_dict() if self.init_optimizer else None,
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "iter": self.iter, "init_iter": self.init_iter,
            "best": self.best, "best_iter": self.best_iter, "last_eval_iter": self.last_eval_iter,
            "config": self.cfg.dump(), "world_size": self.world,
        }

    def save(self, name: str = "last.pth") -> None:
        if dist.is_main():
            atomic_save(self.state_dict(), self.ckpt_dir / name)
        dist.barrier()

    def resume(self) -> None:
        path = self.ckpt_dir / "last.pth"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}; start without --resume")
        ckpt = load_checkpoint(path, map_location=self.device)
        self.student.load_state_dict(ckpt["model"])
        self.distiller.load_distill_state_dict(ckpt["distill"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for name, states in ckpt.get("d_optimizers", {}).items():
            for opt, st in zip(self.d_optimizers.get(name, []), states):
                opt.load_state_dict(st)
        if self.init_optimizer is not None and ckpt.get("init_optimizer"):
            self.init_optimizer.load_state_dict(ckpt["init_optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.iter, self.init_iter = ckpt["iter"], ckpt["init_iter"]
        self.best, self.best_iter = ckpt["best"], ckpt["best_iter"]
        self.last_eval_iter = ckpt.get("last_eval_iter")
        self.records.info(f"Resumed from {path} at iteration {self.iter} (init stage {self.init_iter}/"
                          f"{self.init_total})")

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
        if self.world > 1:
            flag = dist.all_reduce_sum(flag.to(self.device)).cpu()
        return bool(flag.item())

    # -- steps -------------------------------------------------------------------------
    def _autocast(self):
        if self.amp:
            return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])
        return contextlib.nullcontext()

    def _check_finite(self, losses: dict[str, torch.Tensor], where: str) -> bool:
        values = torch.stack([v.detach().float() for v in losses.values()])
        if bool(torch.isfinite(values).all()):
            return True
        bad = [f"{k}={v.item()}" for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
        msg = f"Non-finite loss at {where}: {', '.join(bad)}."
        if self.skip_nonfinite:
            self.records.warning(msg + " Skipping this step (train.skip_nonfinite=True).")
            return False
        raise NonFiniteLossError(msg + " Lower the learning rate or the term's weight, enable train.grad_clip, "
                                       "or set train.skip_nonfinite=True to skip such steps.")

    def _train_step(self, batch: dict) -> dict[str, float] | None:
        it = self.iter
        step_now = (it + 1) % self.accumulate == 0 or it + 1 == self.total_iters
        sync = contextlib.nullcontext()
        if isinstance(self.model, DistributedDataParallel) and not step_now:
            sync = self.model.no_sync()
        with sync:
            with self._autocast():
                _, losses = self.model(batch)
            if not self._check_finite(losses, f"iteration {it + 1}"):
                self.optimizer.zero_grad(set_to_none=True)
                return None
            total = sum(losses.values())
            self.scaler.scale(total / self.accumulate).backward()
        if step_now:
            if self.grad_clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                         float(self.grad_clip))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self._discriminator_steps()
        out = {f"loss/{k}": v.detach() for k, v in losses.items()}
        out["loss"] = total.detach()
        return out

    def _discriminator_steps(self) -> None:
        for name, modules in self.distiller.adversarial_modules().items():
            cached = self.distiller.adversarial_inputs(name)
            if cached is None:
                continue
            s, ts, image = cached
            s = s.detach() if isinstance(s, torch.Tensor) else [x.detach() for x in s]
            for module, t, opt in zip(modules, ts, self.d_optimizers[name]):
                for _ in range(int(getattr(module, "n_critic", 1))):
                    opt.zero_grad(set_to_none=True)
                    try:
                        d_loss = module.discriminator_loss(s, t, image)
                        if not torch.isfinite(d_loss):
                            raise FloatingPointError(f"discriminator loss {d_loss.item()}")
                    except FloatingPointError as exc:
                        msg = f"Non-finite discriminator loss of term {name} at iteration {self.iter + 1}: {exc}."
                        if self.skip_nonfinite:
                            self.records.warning(msg + " Skipping this critic step (train.skip_nonfinite=True).")
                            break
                        raise NonFiniteLossError(msg) from exc
                    d_loss.backward()
                    self._average_grads(module.separate_parameters())
                    opt.step()

    def _average_grads(self, params) -> None:
        if self.world > 1:
            for p in params:
                if p.grad is not None:
                    p.grad.copy_(dist.all_reduce_mean(p.grad))

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        if self.val_loader is None:
            return {}
        return run_evaluation(self.student, self.task, self.val_loader, self.device, self._autocast,
                              self.channels_last)

    def _evaluate_and_record(self) -> dict[str, float]:
        metrics = self.evaluate()
        self.last_eval_iter = self.iter
        if not metrics:
            return metrics
        self.final = metrics
        epoch = self.iter / self.iters_per_epoch
        self.records.record({"iter": self.iter, "epoch": round(epoch, 4), "split": "val", **metrics})
        shown = ", ".join(f"{k} {metrics[k]:.2f}" for k in self.task.metrics if k in metrics)
        key = self.task.primary_metric
        if self.task.is_better(metrics[key], self.best.get(key)):
            self.best, self.best_iter = dict(metrics), self.iter
            self.save("best.pth")
        self.records.info(f"[val] iter {self.iter} epoch {epoch:.2f}: {shown} (best {key} "
                          f"{self.best[key]:.2f} @ iter {self.best_iter})")
        return metrics

    # -- loops ------------------------------------------------------------------------------
    def _batches(self, start: int):
        """Batches from global iteration ``start`` on, epoch after epoch (resumable mid-epoch)."""
        it = start
        while True:
            epoch, offset = divmod(it, self.iters_per_epoch)
            self.train_loader.batch_sampler.set_epoch(epoch, offset)
            for batch in self.train_loader:
                yield to_device(batch, self.device, self.channels_last)
                it += 1

    def _run_init_stage(self, limit: int) -> bool:
        """The initialisation stage of AB / FT / FSP, up to ``limit`` iterations. False if stopped by a signal."""
        if self.init_iter >= limit:
            return True
        names = [t.name for t in self.distiller.init_terms()]
        self.records.info(f"Initialisation stage for {', '.join(names)}: {self.init_total} iterations")
        self.distiller.train()
        batches = self._batches(self.init_iter)
        while self.init_iter < limit:
            batch = next(batches)
            with self._autocast():
                losses = self.distiller.init_forward(batch)
            self._check_finite(losses, f"init iteration {self.init_iter + 1}")
            self.init_optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            params = [p for g in self.init_optimizer.param_groups for p in g["params"]]
            self._average_grads(params)
            if self.grad_clip:
                nn.utils.clip_grad_norm_(params, float(self.grad_clip))
            self.init_optimizer.step()
            self.init_iter += 1
            if self.init_iter % self.log_interval == 0 or self.init_iter == self.init_total:
                self.records.record({"init_iter": self.init_iter, **{f"loss/{k}": v for k, v in losses.items()}})
                self.records.info(f"[init] {self.init_iter}/{self.init_total} " +
                                  " ".join(f"{k} {v.item():.4g}" for k, v in losses.items()))
            if self._should_stop():
                return False
            if self.init_iter % self.iters_per_epoch == 0:
                self.save()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def train(self) -> dict:
        """Run to the end of the schedule (or ``max_iters``); returns the summary."""
        start = time.time()
        init_limit, stop_at = self.init_total, self.total_iters
        if self.max_iters is not None:  # one budget over both stages, the initialisation stage first
            init_limit = min(self.init_total, self.max_iters)
            stop_at = min(self.total_iters, max(self.max_iters - init_limit, 0))
        self.records.info(f"Training {type(self.student).__name__} on {self.device} x{self.world}: "
                          f"{self.total_iters} iterations ({self.iters_per_epoch}/epoch), stopping at {stop_at}; "
                          f"work dir {self.work_dir}")
        interrupted = False
        with self._signals():
            if not self._run_init_stage(init_limit):
                interrupted = True
            if not interrupted and self.init_iter >= self.init_total:
                interrupted = self._main_loop(stop_at)
        if interrupted:
            self.save()
            name = signal.Signals(self._stop_signal).name
            self.records.info(f"Stopped by {name} at iteration {self.iter}; checkpoint saved to "
                              f"{self.ckpt_dir / 'last.pth'}. Continue with --resume.")
            self.records.close()
            raise SystemExit(128 + int(self._stop_signal))
        if self.last_eval_iter != self.iter:
            self._evaluate_and_record()
        self.save()
        summary = self.summary(time.time() - start, stop_at)
        self.records.write_json("summary.json", summary)
        self.records.close()
        return summary

    def _main_loop(self, stop_at: int) -> bool:
        self.distiller.train()
        if self.tcfg.get("eval_first") and self.iter == 0:
            self._evaluate_and_record()
        window: dict[str, list[torch.Tensor]] = {}
        self.records.start_progress(stop_at, self.iter, "train")
        batches = self._batches(self.iter)
        while self.iter < stop_at:
            batch = next(batches)
            self.distiller.epoch = self.iter / self.iters_per_epoch
            factor = self.schedule.factor(self.iter)
            lr = set_lr(self.optimizer, self.base_lrs, factor)
            for name, opts in self.d_optimizers.items():
                for opt, base in zip(opts, self.d_base_lrs[name]):
                    set_lr(opt, base, factor)
            losses = self._train_step(batch)
            self.iter += 1
            if losses is not None:
                for k, v in losses.items():
                    window.setdefault(k, []).append(v)
            self.records.advance({"loss": float(losses["loss"])} if losses and self.records._bar else None)
            if self.iter % self.log_interval == 0 or self.iter == stop_at:
                self._log_window(window, lr)
                window = {}
            if self.iter % self.eval_every == 0 or self.iter == self.total_iters:
                self._evaluate_and_record()
            if self.iter % self.ckpt_every == 0:
                self.save()
            if self._should_stop():
                self.records.stop_progress()
                return True
        self.records.stop_progress()
        return False

    def _log_window(self, window: dict[str, list[torch.Tensor]], lr: float) -> None:
        if not window:
            return
        keys = sorted(window)
        means = torch.stack([torch.stack(window[k]).float().mean() for k in keys])
        means = dist.all_reduce_mean(means.to(self.device)).cpu() if self.world > 1 else means.cpu()
        entry = {"iter": self.iter, "epoch": round(self.iter / self.iters_per_epoch, 4), "lr": lr,
                 **{k: float(v) for k, v in zip(keys, means)}}
        self.records.record(entry)
        terms = " ".join(f"{k} {entry[k]:.4g}" for k in keys)
        self.records.info(f"iter {self.iter}/{self.total_iters} epoch {entry['epoch']:.2f} lr {lr:.4g} {terms}")

    def summary(self, seconds: float, stop_at: int) -> dict[str, Any]:
        return {
            "final": self.final, "best": self.best, "best_iter": self.best_iter,
            "primary_metric": self.task.primary_metric,
            "iters": self.iter, "total_iters": self.total_iters, "epochs": self.iter / self.iters_per_epoch,
            "completed": self.iter >= self.total_iters, "max_iters": self.max_iters,
            "init_iters": self.init_iter, "init_total": self.init_total,
            "config": self.cfg.filename, "work_dir": str(self.work_dir), "world_size": self.world,
            "device": str(self.device), "synthetic": self.synthetic, "seed": self.seed,
            "time_s": round(seconds, 2), "teachers": len(self.distiller.teachers),
            "distill": [t.name for t in self.distiller.terms],
        }
