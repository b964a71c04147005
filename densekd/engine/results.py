"""Collect ``summary.json`` files into tables shaped like CRD's Table 1.

Rows are methods, columns are teacher -> student pairs; each cell is the mean
and standard deviation over seeds of the primary metric, from the last epoch
(``final``) or the best epoch (``best``), labelled as such. Runs that stopped
before the end of their schedule (``--max-iters`` smoke runs, interrupted
runs) are marked, never silently mixed with finished ones. The networks' parameters and FLOPs (``cost`` in
``summary.json``, written by the trainer) go into a cost table of each pair's teacher and student, with the
teacher / student ratios, and into columns of the single-run table.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from densekd.config import config_name

# CRD (Tian et al., ICLR 2020) Table 1 / RepDistiller README: top-1 on CIFAR-100, mean of runs.
PAIRS = ["wrn_40_2-wrn_16_2", "wrn_40_2-wrn_40_1", "resnet56-resnet20", "resnet110-resnet20",
         "resnet110-resnet32", "resnet32x4-resnet8x4", "vgg13-vgg8"]
METHOD_ORDER = ["kd", "fitnet", "at", "sp", "cc", "vid", "rkd", "pkt", "ab", "ft", "fsp", "nst", "crd", "crd_kd",
                "ofd", "irg", "dkd", "kdsvd", "dist", "kd_ls", "dkd_ls"]
METHOD_NAMES = {"kd": "KD", "fitnet": "FitNet", "at": "AT", "sp": "SP", "cc": "CC", "vid": "VID", "rkd": "RKD",
                "pkt": "PKT", "ab": "AB", "ft": "FT", "fsp": "FSP", "nst": "NST", "crd": "CRD", "crd_kd": "CRD+KD",
                "ofd": "OFD", "irg": "IRG", "dkd": "DKD", "kdsvd": "KDSVD", "dist": "DIST", "kd_ls": "KD+LS",
                "dkd_ls": "DKD+LS"}
PUBLISHED = {  # method -> values in PAIRS order
    "teacher": [75.61, 75.61, 72.34, 74.31, 74.31, 79.42, 74.64],
    "student": [73.26, 71.98, 69.06, 69.06, 71.14, 72.50, 70.36],
    "kd": [74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98],
    "fitnet": [73.58, 72.24, 69.21, 68.99, 71.06, 73.50, 71.02],
    "at": [74.08, 72.77, 70.55, 70.22, 72.31, 73.44, 71.43],
    "sp": [73.83, 72.43, 69.67, 70.04, 72.69, 72.94, 72.68],
    "cc": [73.56, 72.21, 69.63, 69.48, 71.48, 72.97, 70.71],
    "vid": [74.11, 73.30, 70.38, 70.16, 72.61, 73.09, 71.23],
    "rkd": [73.35, 72.22, 69.61, 69.25, 71.82, 71.90, 71.48],
    "pkt": [74.54, 73.45, 70.34, 70.25, 72.61, 73.64, 72.88],
    "ab": [72.50, 72.38, 69.47, 69.53, 70.98, 73.17, 70.94],
    "ft": [73.25, 71.59, 69.84, 70.22, 72.37, 72.86, 70.58],
    "fsp": [72.91, None, 69.95, 70.11, 71.89, 72.62, 70.23],
    "nst": [73.68, 72.24, 69.60, 69.53, 71.96, 73.30, 71.53],
    "crd": [75.48, 74.14, 71.16, 71.46, 73.48, 75.51, 73.94],
    "crd_kd": [75.64, 74.38, 71.63, 71.56, 73.75, 75.46, 74.29],
    # DIST (Huang et al., NeurIPS 2022): only the resnet32x4 -> resnet8x4 number is entered here
    "dist": [None, None, None, None, None, 76.31, None],
    # logit standardisation (Sun et al., CVPR 2024; the table of their release's README)
    "kd_ls": [76.11, 74.37, 71.43, 71.48, 74.17, 76.62, 74.36],
    "dkd_ls": [76.39, 74.89, 72.32, 71.85, 74.29, 77.01, 74.81],
}
# rows whose published numbers are not from CRD's Table 1
PUBLISHED_ELSEWHERE = {"dist": "DIST: Huang et al. 2022", "kd_ls": "KD+LS, DKD+LS: Sun et al. 2024",
                       "dkd_ls": "KD+LS, DKD+LS: Sun et al. 2024"}


@dataclass
class Cell:
    final: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    incomplete: int = 0
    params: int | None = None  # of the run's (primary) model at inference: summary.json's `cost`
    flops: int | None = None   # one forward pass on one validation sample (FlopCounterMode)


def place(name: str) -> tuple[str, str]:
    """(row, column) of a config name: benchmark configs map to (method, pair)."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[-3] == "distill":
        return parts[-1], parts[-2]
    if len(parts) >= 2 and parts[-2] in ("teachers", "students"):
        return parts[-2][:-1], parts[-1]  # ('teacher', arch) / ('student', arch)
    return name, "-"


def collect(roots: list[str | Path], metric: str | None = None) -> dict[tuple[str, str], Cell]:
    cells: dict[tuple[str, str], Cell] = {}
    files = sorted({p for root in roots for p in
                    ([Path(root)] if Path(root).name == "summary.json" else Path(root).rglob("summary.json"))})
    if not files:
        raise FileNotFoundError(f"no summary.json under {', '.join(map(str, roots))}; train with tools/train.py first")
    for path in files:
        s = json.loads(path.read_text())
        key = metric or s.get("primary_metric") or "top1"
        if key not in s.get("final", {}):
            continue
        cell = cells.setdefault(place(config_name(s["config"])), Cell())
        cell.final.append(float(s["final"][key]))
        cell.best.append(float(s.get("best", {}).get(key, s["final"][key])))
        cell.seeds.append(s.get("seed"))
        cell.incomplete += 0 if s.get("completed", True) else 1
        cost = s.get("cost") or {}
        if cell.params is None and "params" in cost:
            cell.params, cell.flops = int(cost["params"]), (int(cost["flops"]) if "flops" in cost else None)
    return cells


def _cost_text(params: int | None, flops: int | None) -> tuple[str, str]:
    return ("" if params is None else f"{params / 1e6:.2f}", "" if flops is None else f"{flops / 1e9:.3f}")


def cost_table(cells: dict[tuple[str, str], Cell], cols: list[str]) -> list[str]:
    """Markdown lines: parameters and FLOPs of each pair's teacher and student (from any run of that network),
    and the teacher / student ratios; [] when no summary records a cost."""
    rows = []
    for col in cols:
        if col not in PAIRS:
            continue
        t_arch, s_arch = col.split("-")
        teacher = cells.get(("teacher", t_arch))
        students = [c for (r, c2), c in cells.items() if c.params is not None and
                    ((r, c2) == ("student", s_arch) or (c2 == col and r not in ("teacher", "student")))]
        student = students[0] if students else None
        if (teacher is None or teacher.params is None) and student is None:
            continue
        tp, tf = (teacher.params, teacher.flops) if teacher is not None else (None, None)
        sp, sf = (student.params, student.flops) if student is not None else (None, None)
        ratio = lambda a, b: f"{a / b:.1f}x" if a and b else ""  # noqa: E731
        rows.append(f"| {col.replace('-', ' → ')} | {' | '.join(_cost_text(tp, tf))} | {' | '.join(_cost_text(sp, sf))}"
                    f" | {ratio(tp, sp)} | {ratio(tf, sf)} |")
    if not rows:
        return []
    return ["", "Cost at inference (one validation sample, batch 1; FLOPs by torch.utils.flop_counter):", "",
            "| Teacher → Student | teacher params (M) | teacher GFLOPs | student params (M) | student GFLOPs | "
            "params ratio | FLOPs ratio |", "|---|---:|---:|---:|---:|---:|---:|"] + rows


def fmt(values: list[float]) -> str:
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def table(cells: dict[tuple[str, str], Cell], which: str = "final", published: bool = False) -> str:
    """Markdown table; ``which`` is ``'final'`` (last epoch) or ``'best'`` (best epoch)."""
    pair_cols = [p for p in PAIRS if any(c == p for _, c in cells)]
    arch_cols = {p: p.split("-") for p in PAIRS}
    other_cols = sorted({c for (_, c) in cells if c not in PAIRS and c != "-" and not _is_arch(c, cells)})
    cols = pair_cols + other_cols
    rows = [r for r in METHOD_ORDER if any(k[0] == r for k in cells)]
    rows += sorted({r for r, c in cells if r not in METHOD_ORDER and r not in ("teacher", "student")})
    incomplete = False

    def cell_text(row, col):
        nonlocal incomplete
        if row in ("teacher", "student") and col in arch_cols:
            key = (row, arch_cols[col][0 if row == "teacher" else 1])
        else:
            key = (row, col)
        c = cells.get(key)
        text = fmt(getattr(c, which)) if c else ""
        if c and c.incomplete:
            text += "*"
            incomplete = True
        if published and col in PAIRS and PUBLISHED.get(row):
            ref = PUBLISHED[row][PAIRS.index(col)]
            text = f"{text} ({ref:.2f})" if ref is not None else f"{text} (-)"
        return text

    label = {"final": "last epoch", "best": "best epoch"}[which]
    others = sorted({PUBLISHED_ELSEWHERE[r] for r in rows if r in PUBLISHED_ELSEWHERE}) if published else []
    source = "published CRD Table 1" + (f" ({'; '.join(others)})" if others else "")
    lines = [f"Top-1 at the **{label}** (mean ± std over seeds" + (f"; {source} in parentheses" if published
                                                                  else "") + ")", ""]
    header = ["Teacher → Student"] + [c.replace("-", " → ") for c in cols]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if cols:
        for base in ("teacher", "student"):
            if any(k[0] == base for k in cells) or published:
                lines.append("| " + " | ".join([base.capitalize()] + [cell_text(base, c) for c in cols]) + " |")
        for r in rows:
            lines.append("| " + " | ".join([METHOD_NAMES.get(r, r)] + [cell_text(r, c) for c in cols]) + " |")
    lines += cost_table(cells, cols)
    singles = [(r, c) for (r, c) in cells if c == "-"]
    if singles:
        lines += ["", "| run | " + label + " | params (M) | GFLOPs | seeds |", "|---|---|---:|---:|---|"]
        lines += [f"| {r} | {fmt(getattr(cells[(r, c)], which))}{'*' if cells[(r, c)].incomplete else ''} | "
                  f"{' | '.join(_cost_text(cells[(r, c)].params, cells[(r, c)].flops))} | "
                  f"{len(cells[(r, c)].final)} |" for r, c in sorted(singles)]
        incomplete |= any(cells[k].incomplete for k in singles)
    counts = sorted({len(c.final) for c in cells.values()})
    lines += ["", f"Seeds per cell: {', '.join(map(str, counts))}."]
    if incomplete:
        lines.append("\\* includes runs that stopped before the end of their schedule (e.g. --max-iters smoke runs).")
    return "\n".join(lines) + "\n"


def _is_arch(col: str, cells) -> bool:
    return any(k == ("teacher", col) or k == ("student", col) for k in cells)
