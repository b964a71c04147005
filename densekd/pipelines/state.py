"""Where a stage stands, read from its work dir: finished (skip), interrupted (resume) or not started."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

FINISHED, RESUME, FRESH = "finished", "resume", "fresh"


def read_summary(stage_dir: Path) -> dict | None:
    path = Path(stage_dir) / "summary.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def trained_iters(summary: dict) -> int:
    """Iterations the run behind ``summary`` trained: the main schedule's plus every strategy phase's (the
    initialisation stage of AB/FT/FSP), as ``--max-iters`` counts them."""
    return int(summary.get("iters", 0)) + sum(int(n) for n in (summary.get("phase_iters") or {}).values())


def budget_done(summary: dict, max_iters: int | None) -> bool:
    """The run behind ``summary`` reached the end of its schedule, or used a ``--max-iters`` budget of at
    least ``max_iters`` iterations (see :func:`trained_iters`)."""
    if summary.get("completed"):
        return True
    if max_iters is None:
        return False
    return trained_iters(summary) >= max_iters


@dataclass
class StageState:
    status: str  # FINISHED, RESUME or FRESH
    summary: dict | None
    reason: str


def stage_state(stage_dir: Path, max_iters: int | None = None) -> StageState:
    """A stage is finished when its ``summary.json`` says completed (or, asked for ``max_iters``, records a
    run of that many iterations) and its checkpoint is there: ``best.pth``, or ``last.pth`` for a stage
    without validation metrics. Otherwise ``checkpoints/last.pth`` means interrupted: resume from it."""
    stage_dir = Path(stage_dir)
    ckpts = stage_dir / "checkpoints"
    summary = read_summary(stage_dir)
    if summary is not None and budget_done(summary, max_iters):
        needed = ckpts / ("best.pth" if summary.get("best") else "last.pth")
        if needed.is_file():
            done = trained_iters(summary)
            why = ("summary.json says completed" if summary.get("completed") else
                   f"summary.json records a run of {done} iterations, --max-iters {max_iters}")
            return StageState(FINISHED, summary, why)
    if (ckpts / "last.pth").is_file():
        return StageState(RESUME, summary, f"{ckpts / 'last.pth'} without a finished summary.json")
    return StageState(FRESH, None, "no checkpoint yet")


def probe_state(stage_dir: Path, max_iters: int | None = None) -> StageState:
    """A probe stage (``kind='probe'``) is finished when its ``probe_summary.json`` says completed, from a run
    without a step cap or with one of at least ``max_iters``; otherwise it starts afresh (a probe has nothing to
    resume: its cached features make a rerun cheap)."""
    from densekd.probe import read_summary as read_probe_summary

    summary = read_probe_summary(stage_dir)
    if summary is not None and summary.get("completed"):
        cap = summary.get("max_iters")
        if cap is None or (max_iters is not None and cap >= max_iters):
            why = "probe_summary.json says completed" + (f" (fits capped at {cap} steps)" if cap is not None else "")
            return StageState(FINISHED, summary, why)
    return StageState(FRESH, None, "no finished probe_summary.json yet")


def synthesis_row(summary: dict | None) -> dict | None:
    """A synthesis summary in the shape of a training summary for the stage table: metric ``teacher_top1`` (the
    teacher's top-1 agreement with the target classes on the stored images, when there are targets), iterations
    = batches done / batches."""
    if summary is None:
        return None
    top1 = summary.get("teacher_top1")
    metrics = {} if top1 is None else {"teacher_top1": top1}
    return dict(summary, primary_metric="teacher_top1" if metrics else None, final=metrics, best=metrics,
                iters=summary.get("batches_done"), total_iters=summary.get("num_batches"))


def synthesis_state(stage_dir: Path, max_iters: int | None = None) -> StageState:
    """A synthesize stage (``kind='synthesize'``) is finished when its ``synthesis_summary.json`` says completed
    and its images file is there, from a run without a step cap or with one of at least ``max_iters``; with
    ``synthesis.json`` (settings written at its start) it continues where it stopped; otherwise it starts afresh."""
    from densekd.synthesis.runner import SETTINGS_FILE, read_summary as read_synthesis_summary

    summary = read_synthesis_summary(stage_dir)
    if summary is not None and summary.get("completed") and Path(summary.get("output") or "").is_file():
        cap = summary.get("max_iters")
        if cap is None or (max_iters is not None and cap >= max_iters):
            why = "synthesis_summary.json says completed" + (f" (steps capped at {cap})" if cap is not None else "")
            return StageState(FINISHED, synthesis_row(summary), why)
    if (Path(stage_dir) / SETTINGS_FILE).is_file():
        return StageState(RESUME, synthesis_row(summary), f"{Path(stage_dir) / SETTINGS_FILE} without a finished "
                                                          f"synthesis")
    return StageState(FRESH, None, "no synthesis yet")
