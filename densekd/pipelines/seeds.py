"""Tables over repeated pipelines: one row per pipeline variant, mean ± std over seeds of chosen stages' metrics.

Layout read (what ``tools/pipeline.py CONFIG --seed S`` writes): ``ROOT/<variant>/seed<S>/<stage>/summary.json``
for a training stage, ``.../<stage>/probe_summary.json`` for a probe stage (or ``ROOT/<variant>/<stage>/...`` for
a run without ``--seed``). The tables densekd knows (:data:`TABLES`, printed by ``tools/pipeline_table.py``):

* ``nyu_crossmodal``: CRD's cross-modal NYU table (rows random init, KD, KD+AT, FitNet, CRD; pixel accuracy and
  mIoU of the depth student under the frozen-feature probe and after fine-tuning), the published numbers beside;
* ``stl10_crossmodal``: STL-10 luminance -> chrominance (rows random init, KD, AT, FitNet, CRD, CRD+KD; linear
  probe and fine-tune top-1 of the ab student), densekd's own setting, so no published column;
* ``crd_table4``: CRD's Table 4, transferability of CIFAR-100 features (rows the WRN-16-2 students and the
  WRN-40-2 teacher; linear-probe top-1 on STL-10 and on TinyImageNet at 32 x 32), the published numbers beside.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

SUMMARY_FILES = ("summary.json", "probe_summary.json")  # a training stage's, a probe stage's

# CRD (Tian et al., ICLR 2020), NYU-Depth v2 cross-modal transfer RGB -> depth: pixel accuracy / mIoU (%).
CRD_NYU_PUBLISHED = {"random_init": (56.4, 35.8), "kd": (58.9, 38.0), "kd_at": (60.1, 39.5),
                     "fitnet": (60.8, 40.7), "crd": (61.6, 41.8)}
CRD_NYU_ROWS = ("random_init", "kd", "kd_at", "fitnet", "crd")
ROW_NAMES = {"random_init": "Random init", "kd": "KD", "kd_at": "KD+AT", "fitnet": "FitNet", "crd": "CRD",
             "at": "AT", "crd_kd": "CRD+KD"}

# CRD (Tian et al., ICLR 2020), Table 4: WRN-40-2 -> WRN-16-2 on CIFAR-100, a linear classifier on the frozen
# last feature layer, STL-10 / TinyImageNet top-1 (%), images resized to 32 x 32.
CRD_TABLE4_PUBLISHED = {"student": (69.7, 33.7), "kd": (70.9, 33.9), "at": (70.7, 34.2), "fitnet": (70.3, 33.5),
                        "crd": (71.6, 35.6), "crd_kd": (72.2, 35.5), "teacher": (68.6, 31.5)}
CRD_TABLE4_ROWS = ("student", "kd", "at", "fitnet", "crd", "crd_kd", "teacher")

STL10_CROSSMODAL_ROWS = ("random_init", "kd", "at", "fitnet", "crd", "crd_kd")


@dataclass(frozen=True)
class Column:
    """One table column: the final ``metric`` of stage ``stage`` (mean ± std over seeds)."""

    stage: str
    metric: str
    title: str = ""

    @property
    def header(self) -> str:
        return self.title or f"{self.stage} {self.metric}"


@dataclass(frozen=True)
class SeedTable:
    """A table over pipeline variants: its default results folder, columns, row order and names, and (optional)
    published numbers, one per entry of ``published_titles``, with a note naming their source."""

    name: str
    title: str
    root: str
    columns: tuple[Column, ...]
    rows: tuple[str, ...] = ()
    row_names: dict = field(default_factory=dict)
    published: dict | None = None
    published_titles: tuple[str, ...] = ()
    note: str = ""

    @property
    def stages(self) -> list[str]:
        return list(dict.fromkeys(c.stage for c in self.columns))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(c.metric for c in self.columns))


TABLES: dict[str, SeedTable] = {t.name: t for t in (
    SeedTable(
        "nyu_crossmodal", "CRD's cross-modal NYU-Depth v2 table (RGB -> depth)", "work_dirs/pipelines/nyu_crossmodal",
        tuple(Column(s, m) for s in ("probe", "finetune") for m in ("pixel_acc", "mIoU")),
        CRD_NYU_ROWS, ROW_NAMES, CRD_NYU_PUBLISHED, ("published pixel_acc", "published mIoU"),
        "Published: CRD (Tian et al., ICLR 2020), NYU-Depth v2 RGB -> depth transfer, pixel accuracy / mIoU (%) "
        "under the paper's protocol."),
    SeedTable(
        "stl10_crossmodal", "STL-10 cross-modal transfer, luminance (L) teacher -> chrominance (ab) student",
        "work_dirs/pipelines/stl10_crossmodal",
        (Column("probe", "linear_probe_top1", "linear probe top-1"), Column("finetune", "top1", "fine-tune top-1")),
        STL10_CROSSMODAL_ROWS, ROW_NAMES,
        note="densekd's setting (WRN-16-2 L teacher trained on the 5,000 labelled images, WRN-16-2 ab student on the "
             "105,000 train + unlabelled images at 64 x 64, probe on the labelled train split -> test top-1 %); CRD "
             "ran its STL-10 transfer with other networks and (as we recall the paper) an ImageNet-trained L "
             "teacher, so no published numbers are printed beside these."),
    SeedTable(
        "crd_table4", "CRD Table 4: transferability of CIFAR-100 features (linear probe on frozen features)",
        "work_dirs/pipelines/crd_table4",
        (Column("probe_stl10", "linear_probe_top1", "STL-10 top-1"),
         Column("probe_tinyimagenet", "linear_probe_top1", "TinyImageNet top-1")),
        CRD_TABLE4_ROWS,
        {"student": "Student (WRN-16-2)", "kd": "KD", "at": "AT", "fitnet": "FitNet", "crd": "CRD", "crd_kd": "CRD+KD",
         "teacher": "Teacher (WRN-40-2)"},
        CRD_TABLE4_PUBLISHED, ("published STL-10", "published TinyImageNet"),
        "Published: CRD (Tian et al., ICLR 2020), Table 4, WRN-40-2 -> WRN-16-2 on CIFAR-100, a linear classifier "
        "on the frozen last feature layer, images resized to 32 x 32, top-1 (%). densekd's probe recipe differs: "
        "standardised features of unaugmented images, L-BFGS logistic regression with the weight decay chosen on "
        "10% of the train split."),
)}


def _read(stage_dir: Path) -> dict | None:
    for name in SUMMARY_FILES:
        path = stage_dir / name
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _complete(summary: dict, probe: bool) -> bool:
    """A finished run: a training stage that completed its schedule; a probe whose fits were not capped by a
    ``--max-iters`` smoke run."""
    return bool(summary.get("completed")) and not (probe and summary.get("max_iters") is not None)


def collect(root: str | Path, stages: Sequence[str], metrics: Sequence[str]) -> dict[str, dict]:
    """``{variant: {'cells': {(stage, metric): [values over seeds]}, 'seeds': [...], 'incomplete': n}}``; final
    metrics of each stage's ``summary.json`` (``probe_summary.json`` for a probe stage); runs that did not
    complete (a training stage stopped before the end of its schedule, a probe capped by ``--max-iters``) are
    counted, not used."""
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
                summary = _read(run / stage)
                if summary is None:
                    continue
                if not _complete(summary, probe=not (run / stage / "summary.json").is_file()):
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


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, std = mean_std(values)
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def render(results: dict[str, dict], columns: Sequence[Column], order: Sequence[str] = (),
           names: dict[str, str] | None = None, published: dict[str, tuple] | None = None,
           published_titles: Sequence[str] = ()) -> str:
    """Markdown: rows in ``order`` first (then the rest), one column per :class:`Column`, n seeds, and the
    published numbers (one per ``published_titles``) when given."""
    names = names or {}
    head = ["method"] + [c.header for c in columns] + ["seeds"]
    if published:
        head += list(published_titles)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    rows = [r for r in order if r in results] + sorted(r for r in results if r not in order)
    for r in rows:
        entry = results[r]
        cells = [_cell(entry["cells"].get((c.stage, c.metric), [])) for c in columns]
        n = max((len(v) for v in entry["cells"].values()), default=0)
        seeds = f"{n}" + (f" (+{entry['incomplete']} incomplete)" if entry["incomplete"] else "")
        row = [names.get(r, r)] + cells + [seeds]
        if published:
            pub = published.get(r)
            row += [f"{v:.1f}" for v in pub] if pub else ["–"] * len(published_titles)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def table(results: dict[str, dict], stages: Sequence[str], metrics: Sequence[str], order: Sequence[str] = (),
          names: dict[str, str] | None = None, published: dict[str, tuple] | None = None) -> str:
    """:func:`render` with one column per (stage, metric) and one published value per metric."""
    return render(results, [Column(s, m) for s in stages for m in metrics], order, names, published,
                  [f"published {m}" for m in metrics])


def seed_table(spec: SeedTable, root: str | Path | None = None,
               columns: Sequence[Column] | None = None) -> tuple[str, dict]:
    """``spec``'s table (Markdown, with its note) from the results under ``root`` (default ``spec.root``), and the
    collected results. Other ``columns`` than the table's drop the published numbers (they belong to its columns)."""
    cols = tuple(columns) if columns else spec.columns
    results = collect(root or spec.root, list(dict.fromkeys(c.stage for c in cols)),
                      list(dict.fromkeys(c.metric for c in cols)))
    published = spec.published if cols == spec.columns else None
    text = render(results, cols, spec.rows, spec.row_names, published, spec.published_titles)
    if spec.note and (published or not spec.published):
        text += f"\n{spec.note}\n"
    return text, results
