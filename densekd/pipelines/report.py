"""The table of all stages: ``pipeline.json`` and ``pipeline.md`` in the pipeline work dir."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from densekd.engine.checkpoint import atomic_write_text

COLUMNS = ["stage", "config", "status", "metric", "final", "best", "iterations", "completed", "time", "work dir"]


@dataclass
class StageResult:
    """What one stage did in this run (``status``) and what its work dir holds (``summary``)."""

    name: str
    config: str
    work_dir: Path
    status: str  # trained, resumed, probed, synthesized, stopped, skipped, not selected, pending, failed, interrupted
    summary: dict | None = None

    def row(self) -> dict[str, Any]:
        s = self.summary or {}
        key = s.get("primary_metric")
        return {
            "stage": self.name, "config": self.config, "status": self.status, "primary_metric": key,
            "final": (s.get("final") or {}).get(key), "best": (s.get("best") or {}).get(key),
            "best_iter": s.get("best_iter"), "iters": s.get("iters"), "total_iters": s.get("total_iters"),
            "completed": s.get("completed"), "max_iters": s.get("max_iters"), "time_s": s.get("time_s"),
            "work_dir": str(self.work_dir), "final_metrics": s.get("final") or {}, "best_metrics": s.get("best") or {},
        }

    def line(self) -> str:
        """One line for the log: stage, primary metric final and best."""
        r = self.row()
        if not self.summary:
            return f"stage {self.name!r}: {self.status}, no results yet"
        metric = r["primary_metric"] or "metric"
        best_at = f" @ iter {r['best_iter']}" if r["best_iter"] is not None else ""
        iters = f"{r['iters']}/{r['total_iters']} iterations, " if r["iters"] is not None else ""
        return (f"stage {self.name!r} {self.status}: {metric} final {_num(r['final'])}, best {_num(r['best'])}"
                f"{best_at} ({iters}{_time(r['time_s'])}) in {self.work_dir}")


def _num(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _time(s) -> str:
    if s is None:
        return "-"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _cell(row: dict, col: str) -> str:
    if col == "metric":
        return row["primary_metric"] or "-"
    if col in ("final", "best"):
        return _num(row[col])
    if col == "iterations":
        return "-" if row["iters"] is None else f"{row['iters']}/{row['total_iters']}"
    if col == "completed":
        return "-" if row["completed"] is None else ("yes" if row["completed"] else "no")
    if col == "time":
        return _time(row["time_s"])
    if col == "work dir":
        return row["work_dir"]
    return str(row[col])


def markdown(results: list[StageResult]) -> str:
    rows = [r.row() for r in results]
    lines = [f"| {' | '.join(COLUMNS)} |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row, c).replace("|", "\\|") for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(pipeline_path: str, work_dir: Path, results: list[StageResult], extra: dict | None = None) -> None:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    data = {"pipeline": str(pipeline_path), "work_dir": str(work_dir), **(extra or {}),
            "stages": [r.row() for r in results]}
    atomic_write_text(json.dumps(data, indent=2) + "\n", work_dir / "pipeline.json")
    text = f"# Pipeline {pipeline_path}\n\n" + markdown(results)
    atomic_write_text(text, work_dir / "pipeline.md")
