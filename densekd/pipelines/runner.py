"""Run a pipeline's stages in order in one process: skip finished ones, resume an interrupted one."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from densekd.config import Config, load_config
from densekd.engine.launch import USER_ERRORS
from densekd.engine.workdir import WorkDirError, earlier_run
from densekd.pipelines import refs
from densekd.pipelines.report import StageResult, markdown, write_report
from densekd.pipelines.spec import Pipeline, PipelineError, Stage
from densekd.pipelines.state import (FINISHED, RESUME, budget_done, probe_state, read_summary, stage_state,
                                     synthesis_row, synthesis_state)


def _is_main() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


class PipelineLog:
    """Progress lines on stdout and in ``<pipeline work dir>/pipeline.log``."""

    def __init__(self, work_dir: Path, enabled: bool = True):
        self.path = Path(work_dir) / "pipeline.log"
        self.enabled = enabled

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [pipeline] {msg}"
        print(line, flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


# settings that do not change what a stage learns (a finished stage is kept without a warning about them)
IGNORED_CHANGES = {"data.num_workers", "data.pin_memory", "train.log_interval"}


def config_changes(stage_dir: Path, cfg: Config) -> list[str]:
    """Keys whose values differ between the stage's recorded ``config.py`` and ``cfg`` (empty if none recorded),
    except :data:`IGNORED_CHANGES`."""
    path = Path(stage_dir) / "config.py"
    if not path.is_file():
        return []
    try:
        old = _flatten(load_config(path).to_dict())
    except Exception:  # noqa: BLE001 - an unreadable record is not worth stopping for
        return ["config.py (unreadable)"]
    new = _flatten(cfg.to_dict())
    missing = object()
    return sorted(k for k in old.keys() | new.keys()
                  if k not in IGNORED_CHANGES and old.get(k, missing) != new.get(k, missing))


class PipelineRunner:
    """Runs ``pipeline`` (from :func:`densekd.pipelines.load_pipeline`) stage by stage.

    Args:
        device, synthetic, max_iters: passed to every stage's :class:`~densekd.engine.trainer.Trainer`.
        only: names of the stages to run (the others are reported from their work dirs, not run).
        log: where progress lines go (default: stdout and ``pipeline.log``).
    """

    def __init__(self, pipeline: Pipeline, device: str = "auto", synthetic: bool = False,
                 max_iters: int | None = None, only: list[str] | tuple[str, ...] = (),
                 log: Callable[[str], None] | None = None):
        self.pipeline = pipeline
        self.device = device
        self.synthetic = synthetic
        self.max_iters = max_iters
        self.only = list(only)
        self.log = log or PipelineLog(pipeline.work_dir, enabled=_is_main())
        self.results: list[StageResult] = []

    # -- one stage ------------------------------------------------------------------------------
    def check_inputs(self, stage: Stage) -> None:
        """The files that ``stage``'s references point to exist (their stages have run)."""
        for name, fld, opt in stage.references(self.pipeline.options_of(stage)):
            src = self.pipeline.stage(name)
            path = refs.stage_path(src.work_dir, fld)
            if path.is_dir() if fld == "work_dir" else path.is_file():
                continue
            ref = f"{{{name}.{fld}}}"
            summary = read_summary(src.work_dir)
            if summary is not None and budget_done(summary, self.max_iters):
                hint = (f": it recorded no validation metric, so it wrote no best.pth; read {{{name}.last}} instead"
                        if fld == "best" and not summary.get("best") else
                        f"; was it moved or deleted? Delete {src.work_dir} to train stage {name!r} again")
                raise PipelineError(f"stage {stage.name!r} reads {ref} = {path}, which does not exist although "
                                    f"stage {name!r} has finished{hint}")
            how = (f"run it first (add {name} to --only)" if self.only else
                   "it should have run before; rerun the pipeline")
            raise PipelineError(f"stage {stage.name!r} reads {ref} = {path}, which does not exist: stage {name!r} "
                                f"has not finished ({src.work_dir}); {how}")

    def stale_inputs(self, stage: Stage) -> list[str]:
        """References of a finished ``stage`` whose files are newer than its ``summary.json``."""
        done = stage.work_dir / {"probe": "probe_summary.json", "synthesize": "synthesis_summary.json"}.get(
            stage.kind, "summary.json")
        stale = []
        for name, fld, _opt in stage.references(self.pipeline.options_of(stage)):
            path = refs.stage_path(self.pipeline.stage(name).work_dir, fld)
            if fld != "work_dir" and path.is_file() and path.stat().st_mtime > done.stat().st_mtime:
                stale.append(f"{{{name}.{fld}}}")
        return stale

    def state_of(self, stage: Stage):
        """Where ``stage`` stands (:func:`~densekd.pipelines.state.stage_state`, or
        :func:`~densekd.pipelines.state.probe_state` for a probe stage)."""
        states = {"probe": probe_state, "synthesize": synthesis_state}
        return states.get(stage.kind, stage_state)(stage.work_dir, self.max_iters)

    def skip_finished(self, stage: Stage, state, kept: str, stale_fix: str, changed: list[str] = (),
                      changed_what: str = "", changed_fix: str = "") -> StageResult:
        """A finished stage is kept, whatever kind: a warning when its recorded settings differ (``changed``) or
        an input it read was rewritten after it, then the skip."""
        if changed:
            self.log(f"WARNING stage {stage.name!r} finished with {changed_what} (differs in "
                     f"{', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''}); keeping its {kept}. "
                     f"Delete {stage.work_dir} to {changed_fix}")
        stale = self.stale_inputs(stage)
        if stale:
            self.log(f"WARNING stage {stage.name!r} finished before its input {', '.join(stale)} was last "
                     f"written; keeping its {kept}. Delete {stage.work_dir} to {stale_fix}")
        self.log(f"stage {stage.name!r}: already finished ({state.reason}); skipping")
        return StageResult(stage.name, stage.config, stage.work_dir, "skipped", state.summary)

    def run_probe_stage(self, stage: Stage) -> StageResult:
        """A ``kind='probe'`` stage: skipped when its ``probe_summary.json`` is there, else probed."""
        from densekd.probe import run_probe

        state = self.state_of(stage)
        if state.status == FINISHED:
            return self.skip_finished(stage, state, kept="results", stale_fix="probe the new one")
        self.check_inputs(stage)
        self.log(f"stage {stage.name!r}: probing {stage.checkpoint_path} with {stage.config} in {stage.work_dir}")
        try:
            summary = run_probe(stage.cfg, stage.checkpoint_path, stage.work_dir, device=self.device,
                                max_steps=self.max_iters)
        except USER_ERRORS as exc:
            raise PipelineError(f"stage {stage.name!r} ({stage.config}): {exc}") from None
        return StageResult(stage.name, stage.config, stage.work_dir, "probed", summary)

    def run_synthesis_stage(self, stage: Stage) -> StageResult:
        """A ``kind='synthesize'`` stage: skipped when finished, else synthesised (continuing a stopped synthesis;
        the images of a ``--max-iters`` smoke run are redone by a run with another budget)."""
        from densekd.synthesis.runner import OUTPUT, SETTINGS_FILE, SettingsChanged, Synthesis, read_json

        state = self.state_of(stage)
        if state.status == FINISHED:
            from densekd.synthesis.settings import SynthesisSettings

            stored = (read_json(stage.work_dir / SETTINGS_FILE) or {}).get("settings") or {}
            current = SynthesisSettings.from_config(stage.cfg).capped(state.summary.get("max_iters")).fingerprint_dict()
            changed = sorted(k for k in current if stored.get(k) != current[k])
            return self.skip_finished(stage, state, kept="images", stale_fix="synthesise them again",
                                      changed=changed, changed_what="different settings",
                                      changed_fix="synthesise them again")
        self.check_inputs(stage)
        earlier = read_json(stage.work_dir / SETTINGS_FILE)
        redo = earlier is not None and earlier.get("max_iters") is not None and earlier.get("max_iters") != self.max_iters
        if redo:
            self.log(f"stage {stage.name!r}: its images are a smoke run's (--max-iters {earlier.get('max_iters')}); "
                     f"synthesising them again")
        elif earlier is not None:
            self.log(f"stage {stage.name!r}: continuing the synthesis in {stage.work_dir}")
        else:
            self.log(f"stage {stage.name!r}: synthesising {stage.config} in {stage.work_dir}")
        try:
            summary = Synthesis(stage.cfg, stage.work_dir, device=self.device, synthetic=self.synthetic,
                                max_iters=self.max_iters, overwrite=redo, output=stage.work_dir / OUTPUT).run()
        except SettingsChanged as exc:
            raise PipelineError(f"stage {stage.name!r}: {stage.work_dir} holds a synthesis with other settings (differs "
                                f"in {', '.join(exc.changed[:6])}); delete {stage.work_dir} to synthesise anew, or "
                                f"restore the settings to continue it") from None
        except USER_ERRORS as exc:
            raise PipelineError(f"stage {stage.name!r} ({stage.config}): {exc}") from None
        status = "synthesized" if summary.get("completed") else "stopped"
        return StageResult(stage.name, stage.config, stage.work_dir, status, synthesis_row(summary))

    def run_stage(self, stage: Stage) -> StageResult:
        from densekd.engine.trainer import Trainer

        if stage.kind == "probe":
            return self.run_probe_stage(stage)
        if stage.kind == "synthesize":
            return self.run_synthesis_stage(stage)
        state = stage_state(stage.work_dir, self.max_iters)
        if state.status == FINISHED:
            return self.skip_finished(stage, state, kept="results", stale_fix="train it on the new one",
                                      changed=config_changes(stage.work_dir, stage.cfg),
                                      changed_what="a different config", changed_fix="train it again")
        self.check_inputs(stage)
        resume = state.status == RESUME
        if resume:  # the trainer refuses a changed config (naming the keys) and warns for keys safe to change
            self.log(f"stage {stage.name!r}: resuming ({state.reason})")
        else:
            self.log(f"stage {stage.name!r}: training {stage.config} in {stage.work_dir}")
        try:
            trainer = Trainer(stage.cfg, stage.work_dir, device=self.device, synthetic=self.synthetic,
                              resume=resume, max_iters=self.max_iters)
        except WorkDirError as exc:
            if exc.kind != "earlier_run":
                raise PipelineError(f"stage {stage.name!r} ({stage.config}): {exc}") from None
            raise PipelineError(f"stage {stage.name!r}: {stage.work_dir} holds {earlier_run(stage.work_dir)}, which the "
                                f"pipeline can neither skip (not finished: {state.reason}) nor resume (no "
                                f"checkpoints/last.pth); delete {stage.work_dir} to train the stage again") from None
        except USER_ERRORS as exc:
            raise PipelineError(f"stage {stage.name!r} ({stage.config}): {exc}") from None
        summary = trainer.train()
        return StageResult(stage.name, stage.config, stage.work_dir, "resumed" if resume else "trained", summary)

    # -- all stages -------------------------------------------------------------------------------
    def run(self) -> list[StageResult]:
        """Every stage in order; the table of all stages is written at the end (also after a failure)."""
        p = self.pipeline
        selected = [s.name for s in p.stages if not self.only or s.name in self.only]
        self.log(f"pipeline {p.shown_path}: {len(p.stages)} stages ({' -> '.join(p.names)}), running "
                 f"{', '.join(selected)}; work dir {p.work_dir}")
        self.results = []
        pending = list(p.stages)
        status = "interrupted"
        try:
            while pending:
                stage = pending[0]
                if stage.name not in selected:
                    st = self.state_of(stage)
                    self.results.append(StageResult(stage.name, stage.config, stage.work_dir, "not selected",
                                                    st.summary))
                else:
                    try:
                        result = self.run_stage(stage)
                    except BaseException:
                        st = self.state_of(stage)
                        self.results.append(StageResult(stage.name, stage.config, stage.work_dir, "failed",
                                                        st.summary))
                        pending.pop(0)
                        raise
                    self.results.append(result)
                    self.log(result.line())
                pending.pop(0)
            status = "done"
        except SystemExit as exc:  # SIGINT/SIGTERM inside a stage: the trainer saved last.pth
            if self.results and self.results[-1].status == "failed":
                self.results[-1].status = "interrupted"
            self.log(f"stopped in stage {self.results[-1].name!r} (exit {exc.code}); rerun the same command "
                     f"to resume it")
            raise
        except BaseException:
            status = "failed"
            raise
        finally:
            for stage in pending:
                st = self.state_of(stage)
                self.results.append(StageResult(stage.name, stage.config, stage.work_dir, "pending", st.summary))
            if _is_main():
                write_report(p.shown_path, p.work_dir, self.results,
                             extra={"status": status, "max_iters": self.max_iters, "synthetic": self.synthetic})
                self.log(f"{status}: wrote {p.work_dir / 'pipeline.md'} and pipeline.json")
        return self.results

    def table(self) -> str:
        return markdown(self.results)
