"""Synthesise a dataset from a frozen teacher, batch after batch, resumable at any iteration.

    summary = Synthesis(cfg, 'work_dirs/x', device='cuda').run()

For every batch ``b`` of ``synthesis.batch_size`` images: the images start as N(0, 1) noise in the teacher's
normalised input space (drawn from a generator seeded with ``(seed, b)``); each phase (``synthesis.phases``, by
default one of ``iterations`` steps at full resolution) creates a fresh Adam on them and follows its learning-rate
schedule; every step average-pools the images by the phase's ``downsample`` factor, rolls them by random offsets
in ``[-jitter // downsample, jitter // downsample]`` (rows and columns) and flips them left-right with
probability 1/2 (``flip``), asks the method (:mod:`densekd.synthesis.methods`) for its weighted loss terms,
back-propagates their sum into the images and steps; ``clip`` then clamps every channel to the valid pixel range
``[(0 - mean) / std, (1 - mean) / std]``. The kept images (``keep='last'``, or ``'best'``: those of the lowest
total loss seen) are quantised to uint8 and written as the batch's file; the teacher's prediction on the stored
images and, with target classes, its top-1 agreement with them are recorded.

Target classes (``labels``): ``'balanced'`` gives image ``i`` (over the whole set) class ``i mod K`` (equal
counts when ``num_images`` is a multiple of ``K``; the release cycles the classes within each batch); ``'random'``
draws them uniformly per batch; None synthesises without classes (BNS, Gaussian, dense teachers).

Work dir::

    synthesis.json          the settings and their fingerprint (a continuation must match them)
    synthesis.log           the log
    state.pt                the batch in progress: images, Adam state, RNG, phase and iteration, best images
                            (written atomically every ``checkpoint_interval`` steps and when stopped)
    batches/batch_000012.h5 one file per finished batch (written under a temporary name, then renamed)
    images.h5               all batches joined (or ``synthesis.output``), written when the last batch is done;
                            the batch files are then removed
    synthesis_summary.json  completed, per-batch teacher agreement and final losses, time

Running the same command again continues: finished batches are skipped, the batch in progress resumes from
``state.pt``, and the result is the same file as an uninterrupted run (on CPU, bit for bit). A work dir holding a
synthesis with other settings is refused (naming the keys) unless ``overwrite``.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from densekd.config import Config, ConfigError, config_name
from densekd.data.synthesized import dequantize, join_batch_files, quantize, read_attrs, write_images
from densekd.engine import distributed as dist
from densekd.engine.builder import build_model, calibrate_batchnorm
from densekd.engine.checkpoint import atomic_save, atomic_write_text, load_checkpoint, load_weights
from densekd.engine.resume import flatten
from densekd.engine.workdir import WorkDirLock
from densekd.registry import SYNTHESIS_METHODS
from densekd.synthesis.priors import jitter
from densekd.synthesis.settings import SynthesisSettings, fingerprint
from densekd.tasks.base import main_output

log = logging.getLogger("densekd.synthesis")

SETTINGS_FILE = "synthesis.json"
SUMMARY = "synthesis_summary.json"
STATE = "state.pt"
BATCH_DIR = "batches"
LOG_FILE = "synthesis.log"
OUTPUT = "images.h5"


def default_work_dir(cfg: Config) -> Path:
    return Path("work_dirs") / config_name(cfg.filename)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_summary(work_dir: str | Path) -> dict | None:
    return read_json(Path(work_dir) / SUMMARY)


def _mix(*parts: int) -> int:
    from densekd.data.sampling import mix_seed

    return mix_seed(*parts)


def lr_at(schedule: dict, base_lr: float, it: int, total: int) -> float:
    """The learning rate of step ``it`` (0-based) of a phase of ``total`` steps: ``'constant'``, or ``'cosine'`` --
    DeepInversion's ``lr_cosine_policy``: ``lr * (it + 1) / w`` for the first ``w = warmup_iters`` steps, then
    ``lr / 2 * (1 + cos(pi * (it - w) / (total - w)))``."""
    if schedule["type"] == "constant":
        return base_lr
    w = int(schedule.get("warmup_iters") or 0)
    if it < w:
        return base_lr * (it + 1) / w
    span = max(total - w, 1)
    return 0.5 * (1 + math.cos(math.pi * (it - w) / span)) * base_lr


class SettingsChanged(ConfigError):
    """The work dir holds a synthesis with other settings (``changed``: the differing keys)."""

    def __init__(self, message: str, changed: list[str]):
        super().__init__(message)
        self.changed = changed


class StopRequested(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Synthesis:
    """One synthesis run (see the module docstring).

    Args:
        cfg: a config with a ``synthesis`` section (:mod:`densekd.synthesis.settings`); its ``data.train`` (when
            present) only calibrates the BatchNorm statistics of a teacher whose checkpoint is missing under
            ``synthetic``.
        work_dir: default ``work_dirs/<config name>/``.
        synthetic: a missing teacher / student checkpoint is a warning (random weights), not an error.
        max_iters: a smoke run: every phase at most this many steps and a single batch (recorded; a later run
            without the cap in the same work dir needs ``overwrite``).
        overwrite: delete an earlier synthesis with other settings in ``work_dir`` first.
        output: where the joined file goes (default ``synthesis.output``, else ``WORK_DIR/images.h5``).
    """

    def __init__(self, cfg: Config, work_dir: str | Path | None = None, *, device: str = "auto",
                 synthetic: bool = False, max_iters: int | None = None, overwrite: bool = False,
                 output: str | Path | None = None, progress: bool = True):
        self.cfg = cfg
        self.full_settings = SynthesisSettings.from_config(cfg)
        self.settings = self.full_settings.capped(max_iters)
        self.max_iters = max_iters
        self.work_dir = Path(work_dir) if work_dir is not None else default_work_dir(cfg)
        self.output = Path(output or self.settings.output or self.work_dir / OUTPUT)
        self.synthetic = synthetic
        self.overwrite = overwrite
        self.progress = progress
        self.device_name = device
        self._stop: int | None = None

    # -- building ----------------------------------------------------------------------------------------------
    def _calibration_batches(self, n: int = 4, size: int = 64):
        from densekd.data.sampling import forked_rng
        from densekd.engine.builder import build_dataset

        if not (self.cfg.get("data") or {}).get("train"):
            return []
        ds = build_dataset(self.cfg, "train")
        size = min(size, len(ds))
        out = []
        with forked_rng(self.settings.seed + 1):
            for b in range(n):
                out.append(torch.utils.data.default_collate([ds[(b * size + i) % len(ds)] for i in range(size)]))
        return out

    def _frozen(self, what: str) -> tuple[torch.nn.Module | None, dict]:
        spec = getattr(self.settings, what)
        if spec is None:
            return None, {}
        model = build_model(spec["model"], where=f"synthesis.{what}.model")
        ckpt = spec.get("checkpoint")
        info = {"model": spec["model"], "checkpoint": ckpt}
        if ckpt and Path(ckpt).is_file():
            from densekd.probe.features import file_sha256

            load_weights(model, ckpt, what=f"synthesis {what}")
            info["sha256"] = file_sha256(ckpt)
        else:
            how = (f" Train it first with: python tools/train.py {spec['config']}" if spec.get("config") else "")
            msg = (f"synthesis.{what} checkpoint not found: {ckpt!r}.{how} Or set --cfg-options "
                   f"synthesis.{what}.checkpoint=PATH")
            if not self.synthetic:
                raise FileNotFoundError(msg)
            log.warning(msg + " [--synthetic: continuing with random weights]")
            batches = self._calibration_batches()
            if batches:
                calibrate_batchnorm(model, batches, "image")
            info["sha256"] = None
        model.eval().requires_grad_(False)
        return model.to(self.device), info

    def _build(self) -> None:
        s = self.settings
        if dist.launched_by_torchrun():
            raise ValueError("synthesis runs in one process (every rank would write the same batches); start "
                             "tools/synthesize.py without torchrun, e.g. one process per GPU with its own --work-dir "
                             "and synthesis.seed")
        self.device = dist.setup(self.device_name)
        self.teacher, self.teacher_info = self._frozen("teacher")
        self.student, self.student_info = self._frozen("student")
        self.method = SYNTHESIS_METHODS.build(dict(type=s.method, **(s.loss or {})), where="synthesis.loss",
                                              teacher=self.teacher, student=self.student)
        with torch.no_grad():
            probe = main_output(self.teacher(torch.zeros(2, 3, *s.image_size, device=self.device)))
        self.classifier = torch.is_tensor(probe) and probe.dim() == 2
        self.num_classes = s.num_classes or (int(probe.shape[1]) if self.classifier else None)
        if s.labels is not None and not self.classifier:
            raise ConfigError(f"synthesis.labels={s.labels!r} draws target classes, but the teacher's output is "
                              f"{tuple(probe.shape)}, not class logits; set synthesis.labels=None (a dense teacher: "
                              f"BN statistics and priors only)")
        self.use_targets = s.labels is not None and self.method.uses_targets
        m = torch.tensor(s.mean, device=self.device).view(1, 3, 1, 1)
        sd = torch.tensor(s.std, device=self.device).view(1, 3, 1, 1)
        self.lo, self.hi = (0 - m) / sd, (1 - m) / sd
        fp = s.fingerprint_dict()
        fp["teacher_sha256"] = self.teacher_info.get("sha256")
        fp["student_sha256"] = self.student_info.get("sha256")
        fp["max_iters"] = self.max_iters
        self.fp_dict = fp
        self.fingerprint = fingerprint(fp)

    # -- the work dir ----------------------------------------------------------------------------------------
    def _batch_file(self, b: int) -> Path:
        return self.work_dir / BATCH_DIR / f"batch_{b:06d}.h5"

    def _clear(self) -> None:
        old = read_json(self.work_dir / SETTINGS_FILE) or {}
        for p in (self.work_dir / STATE, self.work_dir / SUMMARY, self.work_dir / SETTINGS_FILE):
            p.unlink(missing_ok=True)
        shutil.rmtree(self.work_dir / BATCH_DIR, ignore_errors=True)
        for out in {old.get("output"), str(self.output)}:
            if out and Path(out).is_file():
                Path(out).unlink()

    def _check_earlier(self) -> None:
        stored = read_json(self.work_dir / SETTINGS_FILE)
        if stored is not None and stored.get("fingerprint") != self.fingerprint:
            if self.overwrite:
                log.info(f"--overwrite: removing the earlier synthesis in {self.work_dir}")
                self._clear()
                return
            a, b = flatten(stored.get("settings") or {}), flatten(self.fp_dict)
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            shown = ", ".join(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in changed[:6])
            raise SettingsChanged(f"work dir {self.work_dir} holds a synthesis with other settings (differs in "
                                  f"{shown or '?'}); continue it with the same settings, start elsewhere with --work-dir "
                                  f"DIR, or replace it with --overwrite", changed)
        if stored is None and self.overwrite:
            self._clear()

    def _write_settings(self) -> None:
        atomic_write_text(json.dumps({"fingerprint": self.fingerprint, "settings": self.fp_dict,
                                      "output": str(self.output), "max_iters": self.max_iters}, indent=2,
                                     default=str) + "\n", self.work_dir / SETTINGS_FILE)

    # -- one batch ---------------------------------------------------------------------------------------------
    def _targets(self, b: int, n: int) -> torch.Tensor | None:
        s = self.settings
        if not self.use_targets:
            return None
        if s.labels == "balanced":
            start = b * s.batch_size
            return torch.arange(start, start + n) % self.num_classes
        g = torch.Generator().manual_seed(_mix(s.seed, b, 1))
        return torch.randint(self.num_classes, (n,), generator=g)

    def _fresh_state(self, b: int, n: int) -> dict:
        s = self.settings
        gen = torch.Generator().manual_seed(_mix(s.seed, b))
        x = torch.randn(n, 3, *s.image_size, generator=gen)
        return {"batch": b, "phase": 0, "iter": 0, "images": x, "optimizer": None, "rng": gen.get_state(),
                "best": None, "best_loss": None, "fingerprint": self.fingerprint, "seconds": 0.0, "losses": {}}

    def _save_state(self, st: dict, x: torch.Tensor, opt, gen: torch.Generator) -> None:
        st = dict(st, images=x.detach().cpu(), optimizer=opt.state_dict() if opt is not None else None,
                  rng=gen.get_state())
        atomic_save(st, self.work_dir / STATE)

    def _load_state(self, b: int) -> dict | None:
        path = self.work_dir / STATE
        if not path.is_file():
            return None
        st = load_checkpoint(path)
        if not isinstance(st, dict) or st.get("fingerprint") != self.fingerprint or st.get("batch") != b:
            return None
        return st

    def _synthesize_batch(self, b: int, bar) -> None:
        s = self.settings
        n = s.batch_size_of(b)
        targets = self._targets(b, n)
        targets_dev = targets.to(self.device) if targets is not None else None
        st = self._load_state(b)
        if st is not None:
            log.info(f"batch {b + 1}/{s.num_batches}: resuming at phase {st['phase'] + 1}, step {st['iter']}")
        else:
            st = self._fresh_state(b, n)
        gen = torch.Generator()
        gen.set_state(st["rng"])
        x = st["images"].to(self.device).requires_grad_(True)
        best = st["best"].to(self.device) if st.get("best") is not None else None
        best_loss = st.get("best_loss")
        t0 = time.perf_counter() - float(st.get("seconds", 0.0))
        last_losses = dict(st.get("losses") or {})
        opt = None
        if self.method.optimises:
            for p in range(st["phase"], len(s.phases)):
                phase = s.phases[p]
                total, factor = phase["iterations"], phase["downsample"]
                lim = s.jitter // factor
                ocfg = s.optimizer
                opt = torch.optim.Adam([x], lr=ocfg["lr"], betas=ocfg["betas"], eps=ocfg["eps"],
                                       weight_decay=ocfg["weight_decay"])
                start = st["iter"] if p == st["phase"] else 0
                if p == st["phase"] and st.get("optimizer") is not None:
                    opt.load_state_dict(st["optimizer"])
                for it in range(start, total):
                    lr = lr_at(s.lr_schedule, ocfg["lr"], it, total)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    dy = dx = 0
                    if lim > 0:
                        dy, dx = (int(v) for v in torch.randint(-lim, lim + 1, (2,), generator=gen))
                    flip = bool(s.flip) and bool(torch.rand(1, generator=gen).item() < 0.5)
                    opt.zero_grad(set_to_none=True)
                    xin = F.avg_pool2d(x, factor) if factor > 1 else x
                    losses = self.method.losses(jitter(xin, dy, dx, flip), targets_dev)
                    loss = sum(losses.values())
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"synthesis batch {b + 1}, phase {p + 1}, step {it + 1}: the loss is "
                                                 f"{loss.item()} ({', '.join(f'{k} {v.item():.4g}' for k, v in losses.items())}); "
                                                 f"lower synthesis.optimizer.lr or the loss weights")
                    loss.backward()
                    value = float(loss.detach())
                    if s.keep == "best" and (best_loss is None or value < best_loss):
                        best, best_loss = x.detach().clone(), value
                    opt.step()
                    if s.clip:
                        with torch.no_grad():
                            x.copy_(torch.maximum(torch.minimum(x, self.hi), self.lo))
                    done = it + 1
                    last_losses = {"loss": value, **{k: float(v.detach()) for k, v in losses.items()}}
                    if bar is not None:
                        bar.update(1)
                    if done % s.log_interval == 0 or done == total:
                        log.info(f"batch {b + 1}/{s.num_batches} phase {p + 1}/{len(s.phases)} step {done}/{total} "
                                 f"lr {lr:.4g} " + " ".join(f"{k} {v:.4g}" for k, v in last_losses.items()))
                    st.update(phase=p, iter=done, best=None if best is None else best.detach().cpu(),
                              best_loss=best_loss, seconds=time.perf_counter() - t0, losses=last_losses)
                    if self._stop is not None:
                        self._save_state(st, x, opt, gen)
                        raise StopRequested(self._stop)
                    if done % s.checkpoint_interval == 0 and done < total:
                        self._save_state(st, x, opt, gen)
                st.update(phase=p + 1, iter=0, optimizer=None)
        final = best if (s.keep == "best" and best is not None) else x.detach()
        images = quantize(final, s.mean, s.std)
        pred, top1 = None, None
        if self.classifier:
            with torch.no_grad():
                logits = main_output(self.teacher(dequantize(images, s.mean, s.std).to(self.device)))
            pred = logits.argmax(1).cpu().numpy()
            if targets is not None:
                top1 = float((logits.argmax(1).cpu() == targets).float().mean() * 100)
        seconds = time.perf_counter() - t0
        attrs = {"batch": b, "start": b * s.batch_size, "fingerprint": self.fingerprint,
                 "losses": json.dumps(last_losses), "teacher_top1": -1.0 if top1 is None else top1,
                 "seconds": seconds}
        write_images(self._batch_file(b), images, None if targets is None else targets.numpy(), pred, attrs)
        (self.work_dir / STATE).unlink(missing_ok=True)
        agree = f", teacher top-1 on the stored images {top1:.1f}%" if top1 is not None else ""
        log.info(f"batch {b + 1}/{s.num_batches}: wrote {n} images to {self._batch_file(b).name} ({seconds:.1f} s"
                 f"{agree})")

    # -- the run -----------------------------------------------------------------------------------------------
    def _handler(self, signum, _frame) -> None:
        self._stop = signum

    def run(self, max_batches: int | None = None) -> dict:
        """Synthesise the missing batches (at most ``max_batches`` of them now), join them when all are done, write
        the summary and return it. A stop by SIGINT / SIGTERM saves the batch in progress and exits 128 + signal."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        lock = WorkDirLock(self.work_dir).acquire()
        handler = logging.FileHandler(self.work_dir / LOG_FILE)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        log.addHandler(handler)
        if log.level == logging.NOTSET or log.level > logging.INFO:
            log.setLevel(logging.INFO)
        previous = {}
        try:
            self._build()
            self._check_earlier()
            summary = read_summary(self.work_dir)
            if summary and summary.get("completed") and summary.get("fingerprint") == self.fingerprint:
                if Path(summary.get("output", "")).is_file():
                    log.info(f"synthesis already complete: {summary['output']} ({summary['num_images']} images)")
                    return summary
                raise ConfigError(f"the synthesis in {self.work_dir} is complete but its images file "
                                  f"{summary.get('output')} is gone; run again with --overwrite to synthesise anew")
            if not (self.work_dir / SETTINGS_FILE).is_file():
                self._write_settings()
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    previous[sig] = signal.signal(sig, self._handler)
                except ValueError:  # not the main thread
                    pass
            return self._run(max_batches)
        except StopRequested as stop:
            name = signal.Signals(stop.signum).name
            log.info(f"Stopped by {name}; the batch in progress is saved in {self.work_dir / STATE}. Run the same "
                     f"command again to continue.")
            raise SystemExit(128 + int(stop.signum)) from None
        finally:
            for sig, h in previous.items():
                signal.signal(sig, h)
            log.removeHandler(handler)
            handler.close()
            lock.release()

    def _run(self, max_batches: int | None) -> dict:
        s = self.settings
        t0 = time.perf_counter()
        todo = [b for b in range(s.num_batches) if not self._batch_file(b).is_file()]
        if max_batches is not None:
            todo = todo[:max(int(max_batches), 0)]
        steps = sum(p["iterations"] for p in s.phases) if self.method.optimises else 0
        log.info(f"synthesis {s.method} from {self.teacher_info['model'].get('type')} "
                 f"({self.teacher_info.get('checkpoint')}) on {self.device}: {s.num_images} images of "
                 f"{s.image_size[0]} x {s.image_size[1]} in {s.num_batches} batches of {s.batch_size}, {steps} steps "
                 f"each; {s.num_batches - len([b for b in range(s.num_batches) if not self._batch_file(b).is_file()])} "
                 f"done, {len(todo)} to do now; work dir {self.work_dir}")
        from tqdm import tqdm

        bar = tqdm(total=steps * len(todo), disable=None if self.progress else True, leave=False, desc="synthesis")
        try:
            for b in todo:
                if self._stop is not None:
                    raise StopRequested(self._stop)
                self._synthesize_batch(b, bar)
        finally:
            bar.close()
        done = [b for b in range(s.num_batches) if self._batch_file(b).is_file()]
        complete = len(done) == s.num_batches
        if complete:
            files = [self._batch_file(b) for b in done]
            attrs = {"method": s.method, "mean": list(s.mean), "std": list(s.std),
                     "num_classes": self.num_classes or 0, "fingerprint": self.fingerprint,
                     "teacher": json.dumps(self.teacher_info, default=str),
                     "settings": json.dumps(self.fp_dict, default=str)}
            per_batch = [read_attrs(f) for f in files]
            join_batch_files(files, self.output, attrs)
            log.info(f"joined {len(files)} batches into {self.output}")
        else:
            per_batch = [read_attrs(self._batch_file(b)) for b in done]
        summary = self._summary(complete, per_batch, time.perf_counter() - t0)
        atomic_write_text(json.dumps(summary, indent=2, default=str) + "\n", self.work_dir / SUMMARY)
        if complete:
            shutil.rmtree(self.work_dir / BATCH_DIR, ignore_errors=True)
        else:
            log.info(f"{len(done)}/{s.num_batches} batches done; run the same command again to continue")
        return summary

    def _summary(self, complete: bool, per_batch: list[dict], seconds: float) -> dict[str, Any]:
        s = self.settings
        rows = [{"batch": int(a["batch"]), "teacher_top1": (None if float(a["teacher_top1"]) < 0 else
                                                            round(float(a["teacher_top1"]), 2)),
                 "losses": json.loads(a["losses"]), "seconds": round(float(a["seconds"]), 2)} for a in per_batch]
        tops = [r["teacher_top1"] for r in rows if r["teacher_top1"] is not None]
        earlier = read_summary(self.work_dir) or {}
        return {
            "completed": complete, "method": s.method, "num_images": s.num_images, "num_batches": s.num_batches,
            "batches_done": len(rows), "output": str(self.output) if complete else None,
            "image_size": list(s.image_size), "labels": s.labels if self.use_targets else None,
            "num_classes": self.num_classes, "teacher": self.teacher_info, "student": self.student_info or None,
            "teacher_top1": round(sum(tops) / len(tops), 2) if tops else None,
            "fingerprint": self.fingerprint, "max_iters": self.max_iters, "synthetic": self.synthetic,
            "device": str(self.device), "config": self.cfg.filename, "work_dir": str(self.work_dir),
            "time_s": round(float(earlier.get("time_s", 0.0)) + seconds, 2) if not earlier.get("completed") else
            round(seconds, 2),
            "batch_seconds": round(sum(r["seconds"] for r in rows), 2), "batches": rows,
        }


def run_synthesis(cfg: Config, work_dir: str | Path | None = None, *, max_batches: int | None = None,
                  **kwargs) -> dict:
    """``Synthesis(cfg, work_dir, **kwargs).run(max_batches)``."""
    return Synthesis(cfg, work_dir, **kwargs).run(max_batches)
