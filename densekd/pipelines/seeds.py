"""Tables over repeated pipelines: one row per pipeline variant, mean ± std over seeds of chosen stages' metrics.

Layout read (what ``tools/pipeline.py CONFIG --seed S`` writes): ``ROOT/<variant>/seed<S>/<stage>/summary.json``
(or ``ROOT/<variant>/<stage>/summary.json`` for a run without ``--seed``). Used for CRD's cross-modal NYU table
(rows: random init, KD, KD+AT, FitNet, CRD; columns: pixel accuracy and mIoU of the depth student under the
frozen-feature probe and after fine-tuning), with the published numbers beside ours.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Sequence

# CRD (Tian et al., ICLR 2020), NYU-Depth v2 cross-modal transfer RGB -> depth: pixel accuracy / mIoU (%).
CRD_NYU_PUBLISHED = {"random_init": (56.4, 35.8), "kd": (58.9, 38.0), "kd_at": (60.1, 39.5),
                     "fitnet": (60.8, 40.7), "crd": (61.6, 41.8)}
CRD_NYU_ROWS = ("random_init", "kd", "kd_at", "fitnet", "crd")
ROW_NAMES = {"random_init": "Random init", "kd": "KD", "kd_at": "KD+AT", "fitnet": "FitNet", "crd": "CRD"}


def collect(root: str | Path, stages: Sequence[str], metrics: Sequence[str]) -> dict[str, dict]:
    """``{variant: {'cells': {(stage, metric): [values over seeds]}, 'seeds': [...], 'incomplete': n}}``; final
    metrics of each stage's ``summary.json``; runs that did not complete their schedule are counted, not used."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no results under {root}: run the pipelines first (python tools/pipeline.py "
                                f"CONFIG --seed S)")
    out: dict[str, dict] = {}
    for variant in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = sorted(variant.glob("seed*")) or [variant]
        for run in runs:
            seed = run.name[4:] if run.name.startswith("seed") else None
            entry = out.setdefault(variant.name, {"cells": {}, "seeds": [], "incomplete": 0})
            found = False
            for stage in stages:
                path = run / stage / "summary.json"
                if not path.is_file():
                    continue
                summary = json.loads(path.read_text())
                if not summary.get("completed"):
                    entry["incomplete"] += 1
                    continue
                found = True
                for metric in metrics:
                    value = (summary.get("final") or {}).get(metric)
                    if value is not None:
                        entry["cells"].setdefault((stage, metric), []).append(float(value))
            if found and seed is not None:
                entry["seeds"].append(seed)
    return {k: v for k, v in out.items() if v["cells"] or v["incomplete"]}


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(results: dict[str, dict], stages: Sequence[str], metrics: Sequence[str], order: Sequence[str] = (),
          names: dict[str, str] | None = None, published: dict[str, tuple] | None = None) -> str:
    """Markdown: rows in ``order`` first (then the rest), one column per (stage, metric), n seeds, and the
    published numbers (one value per metric) when given."""
    names = names or {}
    head = ["method"] + [f"{stage} {metric}" for stage in stages for metric in metrics] + ["seeds"]
    if published:
        head += [f"published {metric}" for metric in metrics]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    rows = [r for r in order if r in results] + sorted(r for r in results if r not in order)
    for r in rows:
        entry = results[r]
        cells = [_cell(entry["cells"].get((s, m), [])) for s in stages for m in metrics]
        n = max((len(v) for v in entry["cells"].values()), default=0)
        seeds = f"{n}" + (f" (+{entry['incomplete']} incomplete)" if entry["incomplete"] else "")
        row = [names.get(r, r)] + cells + [seeds]
        if published:
            pub = published.get(r)
            row += [f"{v:.1f}" for v in pub] if pub else ["–"] * len(metrics)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
