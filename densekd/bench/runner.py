"""Run a suite: every candidate built in one process, timed in interleaved rounds, its memory measured.

Candidates, each on ONE fixed batch already on the device (drawn once from its own trainer's loader, so that a
method whose dataset adds keys, such as CRD's contrast indices, gets them):

* ``student alone``: ``train_iteration`` of the suite's baseline config (the student's forward, backward and
  optimiser update, task loss only);
* ``teacher forward``: the pair's teacher (that of the loader-line method's trainer, else of the first method)
  on the student's batch, under ``torch.no_grad()`` and the run's autocast, as the distiller calls it;
* every method: ``Trainer.train_iteration(batch)`` of its config, the step training runs. That is the main
  schedule's step: a method with an initialisation phase (AB, FT, FSP) is timed in its main phase (the phase
  itself, ``init_epochs`` of the init terms, is a one-off cost and not timed), and a method with a critic
  (holistic terms) includes the critic's steps, which ``train_iteration`` runs after the student's update.

``bound = median(student alone) + median(teacher forward)``; each method's ratio is its median over the bound.
After the timed rounds each candidate runs one more step under :class:`~densekd.bench.measure.StepMemory`.

The loader line (:func:`loader_line`) times the loader-line method fed by its real training loader (the
config's workers) against the same trainer on its fixed batch, in two consecutive blocks.
"""
from __future__ import annotations

import functools
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from densekd.bench.measure import MB, Candidate, StepMemory, run_block, run_rounds, summarize
from densekd.bench.suites import ROOT, Method, Size, Suite

STUDENT, TEACHER = "student alone", "teacher forward"


class BuildError(ValueError):
    """A candidate's config could not be built: its name and config, then the error's line."""


@dataclass
class SuiteRun:
    """What one ``--suite`` invocation asks for (see :mod:`densekd.bench.cli` for the defaults)."""

    suite: Suite
    methods: list[Method]
    size: Size
    size_name: str
    device: str = "cpu"
    reps: int = 7
    warmup: int = 2
    threads: int | None = 1
    cfg_options: list[str] = field(default_factory=list)
    data_root: str | None = None
    loader: bool = True
    progress: bool = True


def leaf_datasets(node):
    """The dataset dicts of a data split that wrap no other dataset (the images themselves)."""
    from densekd.registry import DATASETS

    def is_dataset(v):
        return isinstance(v, dict) and isinstance(v.get("type"), str) and v["type"] in DATASETS

    if not is_dataset(node):
        return
    inner = [v for v in node.values() if is_dataset(v)]
    if not inner:
        yield node
    for v in inner:
        yield from leaf_datasets(v)


def trainer_config(config: str, options: list[str], settings: dict, data_root: str | None):
    """``config`` on synthetic data unless ``data_root`` is given, with ``settings`` on its training images'
    dataset, then ``options`` (``--cfg-options``) applied."""
    from densekd.config import apply_overrides, load_config
    from densekd.engine.builder import set_data_root, use_synthetic

    cfg = load_config(ROOT / config)
    if data_root:
        set_data_root(cfg, data_root)
    else:
        use_synthetic(cfg)
    for ds in leaf_datasets((cfg.get("data") or {}).get("train")):
        ds.update(settings)
    apply_overrides(cfg, options)
    return cfg


def build_trainer(config: str, options: list[str], settings: dict, device: str, data_root: str | None,
                  work_dir: Path, cached: bool = False):
    """A Trainer of :func:`trainer_config` exactly as training builds it; teachers without a checkpoint stay
    random (``synthetic=True`` turns that error into a warning). ``cached``: first write an offline teacher cache
    of the run (``tools/cache_teacher.py``'s work) and train from it. The cache covers one batch of unaugmented
    images (one view each), so that writing it takes one teacher forward: what a step costs does not depend on
    the length of the training set or on its number of views."""
    from densekd.engine.trainer import Trainer

    cfg = trainer_config(config, options, settings, data_root)
    if cached:
        import torch

        from densekd.distill.cache import write_config_cache

        for ds in leaf_datasets(cfg["data"]["train"]):  # one batch of unaugmented images
            ds.update(num_samples=int(cfg["data"]["batch_size"]), augment=False)
        cache = work_dir.with_name(work_dir.name + "_teacher_cache.h5")
        cfg["teacher_cache"] = str(write_config_cache(cfg, cache, synthetic=True, device=torch.device(device),
                                                      log=lambda _: None))
    trainer = Trainer(cfg, work_dir, device=device, synthetic=True)
    trainer.strategy.train()
    return trainer


def fixed_batch(trainer) -> dict:
    """One training batch on the device, drawn from the trainer's loader (whose workers are then shut down)."""
    batches = trainer.batches(0)
    batch = next(batches)
    batches.close()
    return batch


def teacher_forward(trainer, batch: dict):
    """A step running the trainer's teachers on ``batch`` without gradients, as its distiller does."""
    import torch

    from densekd.engine.step import amp_autocast

    distiller = trainer.strategy.distiller
    pairs = list(zip(distiller.teachers, distiller.teacher_inputs))
    if not pairs:
        raise ValueError(f"{trainer.cfg.filename}: the config has no teacher to time")

    def step():
        with torch.no_grad(), amp_autocast(trainer.device, trainer.amp):
            for teacher, key in pairs:
                teacher(batch[key])
    return step


MODULES = " [loss modules]"  # suffix of the candidate timing a method's loss modules alone


def loss_modules_step(trainer, batch: dict):
    """A step of the method's loss modules alone, or None (no distiller, no term): each term's loss module
    forward on the inputs one forward of the distiller gave it (recorded by ``recording_term_calls``: student
    inputs detached into leaves, connectors already applied, teachers' detached), then the gradients for those
    inputs and the modules' own parameters (``torch.autograd.grad``: returned, never accumulated into ``.grad``,
    so the method's own steps do not see them). The networks, the connectors, the optimiser and any critic update
    are not in it: what the method's own arithmetic costs on top of the bound."""
    import torch

    from densekd.distill.distiller import map_tensors

    distiller = getattr(trainer.strategy, "distiller", None)
    if distiller is None or not hasattr(distiller, "recording_term_calls"):
        return None
    with distiller.recording_term_calls() as calls, torch.no_grad():
        distiller(batch)
    if not calls:
        return None
    wrt: list = []  # the student-side leaves, then the modules' own parameters

    def leaf(x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(x.is_floating_point())
        if x.requires_grad:
            wrt.append(x)
        return x

    detach = functools.partial(map_tensors, torch.Tensor.detach)
    calls = [(term, module, map_tensors(leaf, s), detach(t), detach(extra)) for term, module, s, t, extra in calls]
    # the gradients are returned, not accumulated into .grad: the method's own train_iteration, timed in the same
    # rounds, must not find them
    wrt += list(dict.fromkeys(p for _, module, _, _, _ in calls for p in module.parameters() if p.requires_grad))

    def step():
        total = sum(distiller.call_term(term, module, s, t, extra).float() for term, module, s, t, extra in calls)
        if total.requires_grad:
            torch.autograd.grad(total, wrt, allow_unused=True)
    return step


def step_notes(trainer) -> list[str]:
    """What a method's timed ``train_iteration`` does beyond the student's step, read from the trainer (phases
    before the main schedule, extra optimisers such as critics): no method names here."""
    notes = [f"phase {p.name!r} ({p.iters} iterations) runs before the main schedule and is not timed; the "
             f"main-phase step is timed" for p in trainer.phases if p.iters > 0]
    extra = [name for name in trainer.strategy.optimizers() if name not in ("student", "init")]
    if extra:
        notes.append("the step includes the updates of " + ", ".join(extra))
    return notes


def build_warnings(work_dir: Path) -> list[str]:
    """The WARNING lines a trainer logged while it was built (random teachers and the like)."""
    log = work_dir / "train.log"
    if not log.is_file():
        return []
    return [line.split(" WARNING ", 1)[1].strip() for line in log.read_text().splitlines() if " WARNING " in line]


def loader_line(trainer, batch: dict, reps: int, warmup: int, sync) -> dict:
    """The step fed by the trainer's real training loader vs on ``batch``: medians and the difference in %.

    The loader block runs first, its untimed warm-up including the batches the workers prefetched
    (num_workers x prefetch_factor), so that the timed steps wait for batches as steady training does; then the
    fixed-batch block. On a CPU the workers share the cores with the step."""
    loader = trainer.train_loader
    depth = loader.num_workers * (loader.prefetch_factor or 0)
    batches = trainer.batches(0)
    fed = summarize(run_block(lambda: trainer.train_iteration(next(batches)), reps, warmup + depth, sync))
    batches.close()
    fixed = summarize(run_block(lambda: trainer.train_iteration(batch), reps, warmup, sync))
    return {"num_workers": loader.num_workers, "prefetch_factor": loader.prefetch_factor, "loader_fed": fed,
            "prefetched": fixed,
            "difference_pct": 100.0 * (fed["median_ms"] - fixed["median_ms"]) / fixed["median_ms"]}


def environment(device, threads: int) -> dict:
    """Where the numbers were taken: versions, device, threads."""
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
           "device": str(device), "threads": threads, "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def _row(name: str, role: str, samples: list[float], peak: int | None, **extra) -> dict:
    return {"name": name, "role": role, **summarize(samples), "samples_ms": [1000.0 * s for s in samples],
            "peak_mb": None if peak is None else peak / MB, **extra}


@dataclass
class Built:
    """The trainers of a suite run, each with its fixed batch; ``source`` holds the teacher that is timed."""

    student: object
    student_batch: dict
    methods: dict[str, tuple[Method, object, dict]]  # name -> (method, trainer, batch)
    source: object
    scratch: Path

    def trainers(self) -> list:
        return [self.student] + [tr for _, tr, _ in self.methods.values()]

    def close(self) -> None:
        for tr in self.trainers():
            tr.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def build_all(run: SuiteRun, device) -> Built:
    """Every trainer of ``run`` and its fixed batch; a config that cannot be built is a :class:`BuildError`
    naming the candidate (the trainers built so far are closed)."""
    from densekd.engine.launch import USER_ERRORS, one_line

    options = run.suite.size_options(run.size) + list(run.cfg_options)
    settings = run.suite.dataset_settings(run.size, synthetic=not run.data_root)
    scratch = Path(tempfile.mkdtemp(prefix=f"densekd-bench-{run.suite.name}-"))
    built: list = []

    def build(name: str, config: str, cached: bool = False, own: tuple[str, ...] = ()):
        try:
            built.append(build_trainer(config, list(own) + options, settings, str(device), run.data_root,
                                       scratch / f"t{len(built)}", cached=cached))
        except USER_ERRORS as exc:  # which candidate failed, then the error's own line
            for tr in built:
                tr.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise BuildError(f"{name} ({config}): {one_line(exc)}") from exc
        return built[-1]

    student = build(STUDENT, run.suite.student)
    methods = {m.name: (m, build(m.name, m.config, m.cached, m.options)) for m in run.methods}
    methods = {name: (m, tr, fixed_batch(tr)) for name, (m, tr) in methods.items()}
    source = methods.get(run.suite.loader_method, next(iter(methods.values())))[1]
    return Built(student, fixed_batch(student), methods, source, scratch)


def run_suite(run: SuiteRun) -> dict:
    """Build, time and measure every candidate of ``run`` (see the module docstring); the result as a dict."""
    import torch

    from densekd.engine import distributed as dist

    device = dist.setup(run.device)
    if run.threads is not None:
        torch.set_num_threads(run.threads)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    built = build_all(run, device)
    try:
        student, batch = built.student, built.student_batch
        candidates = [Candidate(STUDENT, lambda: student.train_iteration(batch)),
                      Candidate(TEACHER, teacher_forward(built.source, batch))]
        candidates += [Candidate(name, (lambda tr, b: lambda: tr.train_iteration(b))(tr, b))
                       for name, (_, tr, b) in built.methods.items()]
        modules = {name: loss_modules_step(tr, b) for name, (_, tr, b) in built.methods.items()}
        candidates += [Candidate(name + MODULES, fn) for name, fn in modules.items() if fn is not None]
        samples = run_rounds(candidates, run.reps, run.warmup, sync, progress=_progress(run))
        memory = StepMemory(device)
        peaks = {c.name: memory.measure(c.fn) for c in candidates if not c.name.endswith(MODULES)}
        notes = list(run.suite.notes)
        line, name = None, run.suite.loader_method
        if run.loader and name in built.methods:
            _, tr, b = built.methods[name]
            line = {"method": name, **loader_line(tr, b, run.reps, run.warmup, sync)}
        elif run.loader:
            notes.append(f"No loader line: its method {name} is not among --methods.")
        result = _header(run, device, memory.kind)
        result.update(_rows(run, built, samples, peaks))
        result["loader_line"] = line
        result["build_warnings"] = sorted({w for i in range(len(built.trainers()))
                                           for w in build_warnings(built.scratch / f"t{i}")})
        result["notes"] = notes
        return result
    finally:
        built.close()


def _header(run: SuiteRun, device, memory_kind: str) -> dict:
    """The run's settings and environment."""
    import torch

    settings = run.suite.dataset_settings(run.size, synthetic=not run.data_root)
    return {
        "suite": run.suite.name, "title": run.suite.title, "size": run.size_name, "batch": run.size.batch,
        "image_size": list(run.size.image) if run.size.image else None, "reps": run.reps, "warmup": run.warmup,
        "data": f"real ({run.data_root})" if run.data_root else "synthetic",
        "cfg_options": run.suite.size_options(run.size) + list(run.cfg_options),
        "dataset_settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
        "environment": environment(device, torch.get_num_threads()), "memory_measure": memory_kind,
        "timing": "medians of interleaved rounds: after the warm-up rounds, each round runs one step of every "
                  "candidate in the order listed", "student_config": run.suite.student,
    }


def _rows(run: SuiteRun, built: Built, samples: dict, peaks: dict) -> dict:
    """Student, teacher, the bound and every method's row with its ratio and target."""
    out = {"student": _row(STUDENT, "student", samples[STUDENT], peaks[STUDENT], config=run.suite.student),
           "teacher": _row(TEACHER, "teacher", samples[TEACHER], peaks[TEACHER],
                           config=str(Path(built.source.cfg.filename).relative_to(ROOT)))}
    bound = out["bound_ms"] = out["student"]["median_ms"] + out["teacher"]["median_ms"]
    out["methods"] = {}
    for name, (method, tr, _) in built.methods.items():
        row = _row(name, "method", samples[name], peaks[name], config=method.config, options=list(method.options),
                   kind=method.kind, target=method.target, notes=step_notes(tr), **tr.strategy.summary())
        row["ratio"] = row["median_ms"] / bound
        own = samples.get(name + MODULES)
        row["loss_modules"] = None if own is None else {**summarize(own), "samples_ms": [1000.0 * x for x in own]}
        # what the step cannot go below: the bound plus the loss modules' own forward + backward
        row["floor_ratio"] = None if own is None else 1.0 + row["loss_modules"]["median_ms"] / bound
        row["within_target"] = None if method.target is None else row["ratio"] <= method.target
        out["methods"][name] = row
    return out


def _progress(run: SuiteRun):
    if not run.progress:
        return None
    from tqdm import tqdm

    return lambda rounds: tqdm(rounds, desc=f"{run.suite.name}: rounds", unit="round", file=sys.stderr)
