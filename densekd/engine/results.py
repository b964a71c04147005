"""Collect ``summary.json`` files into tables shaped like CRD's Table 1 (CIFAR-100), CRD's Table 3 (ImageNet)
and CIRKD's Cityscapes table.

CIFAR-100 (:func:`table`): rows are methods, columns are teacher -> student pairs; each cell is the mean
and standard deviation over seeds of the primary metric, from the last epoch
(``final``) or the best epoch (``best``), labelled as such. Runs that stopped
before the end of their schedule (``--max-iters`` smoke runs, interrupted
runs) are marked, never silently mixed with finished ones.

Cityscapes in CIRKD's setting (:func:`cirkd_table`, configs/cityscapes/cirkd/<student>_<method>.py): rows are
methods, columns the three students, cells the val mIoU the same way.
Table 3 (:func:`collect_imagenet`, :func:`imagenet_table`): the runs of ``configs/imagenet/`` (teacher
ResNet-34, student ResNet-18, the distillations of ``distill/resnet34-resnet18/``) as top-1 and top-5 ERROR
(100 - accuracy, in %), the way CRD's Table 3 reports them, with the published errors beside them.
:func:`report` renders whichever of them a set of runs fills.
The networks' parameters and FLOPs (``cost`` in
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
                "ofd", "irg", "dkd", "kdsvd", "dist", "kd_ls", "dkd_ls", "reviewkd", "mlkd", "mlkd_ls", "ifm"]
METHOD_NAMES = {"kd": "KD", "fitnet": "FitNet", "at": "AT", "sp": "SP", "cc": "CC", "vid": "VID", "rkd": "RKD",
                "pkt": "PKT", "ab": "AB", "ft": "FT", "fsp": "FSP", "nst": "NST", "crd": "CRD", "crd_kd": "CRD+KD",
                "ofd": "OFD", "irg": "IRG", "dkd": "DKD", "kdsvd": "KDSVD", "dist": "DIST", "kd_ls": "KD+LS",
                "dkd_ls": "DKD+LS", "reviewkd": "ReviewKD", "mlkd": "MLKD", "mlkd_ls": "MLKD+LS", "ifm": "IFM"}
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
    # ReviewKD (Chen et al., CVPR 2021), its Table 1 as repeated in DKD's and MLKD's CIFAR-100 tables (six pairs, no
    # resnet110 -> resnet20); entered from those tables, not checked against a stored copy of the paper
    "reviewkd": [76.12, 75.09, 71.89, None, 73.89, 75.63, 74.84],
    # MLKD (Jin et al., CVPR 2023) and MLKD+LS (Sun et al., CVPR 2024): the table of the logit-standardisation
    # release's README (its MLKD row repeats MLKD's paper and adds resnet110 -> resnet20)
    "mlkd": [76.63, 75.35, 72.19, 71.89, 74.11, 77.08, 75.18],
    "mlkd_ls": [76.95, 75.56, 72.33, 72.27, 74.32, 78.28, 75.22],
}
# rows whose published numbers are not from CRD's Table 1
PUBLISHED_ELSEWHERE = {"dist": "DIST: Huang et al. 2022", "kd_ls": "KD+LS, DKD+LS: Sun et al. 2024",
                       "dkd_ls": "KD+LS, DKD+LS: Sun et al. 2024", "reviewkd": "ReviewKD: Chen et al. 2021",
                       "mlkd": "MLKD: Jin et al. 2023", "mlkd_ls": "MLKD+LS: Sun et al. 2024"}


# CIRKD's Cityscapes benchmark (Yang et al., CVPR 2022): val mIoU from the release's README (winycg/CIRKD,
# "Performance on Cityscapes" and "Performance of Segmentation KD methods on Cityscapes"), teacher DeepLabV3-R101
# 78.07; the DIST row from DIST's segmentation release (Huang et al., NeurIPS 2022, hunto/DIST_KD). None: no
# published number for that student.
CIRKD_STUDENTS = ["deeplabv3_r18", "deeplabv3_mbv2", "pspnet_r18"]
CIRKD_STUDENT_NAMES = {"deeplabv3_r18": "DeepLabV3-R18", "deeplabv3_mbv2": "DeepLabV3-MBV2",
                       "pspnet_r18": "PSPNet-R18"}
CIRKD_TEACHER = "deeplabv3_r101"
CIRKD_METHODS = ["baseline", "skd", "ifvd", "cwd", "cirkd", "dist"]
CIRKD_METHOD_NAMES = {"baseline": "Baseline", "skd": "SKD", "ifvd": "IFVD", "cwd": "CWD", "cirkd": "CIRKD",
                      "dist": "DIST"}
CIRKD_PUBLISHED = {  # method -> values in CIRKD_STUDENTS order
    "teacher": [78.07, 78.07, 78.07],
    "baseline": [74.21, 73.12, 72.55],
    "skd": [75.42, 73.82, None],
    "ifvd": [75.59, 73.50, None],
    "cwd": [75.55, 74.66, None],
    "cirkd": [76.38, 75.42, 74.73],
    "dist": [77.10, None, 76.31],
}
CIRKD_PUBLISHED_ELSEWHERE = {"dist": "DIST: Huang et al. 2022"}


# CRD (Tian et al., ICLR 2020) Table 3: ImageNet validation top-1 / top-5 error (%), torchvision's ResNet-34
# teacher -> ResNet-18, the 100-epoch recipe. DKD and DIST come from their own releases, which report top-1
# accuracy only (errors here are 100 - accuracy; their students and recipes differ slightly from CRD's).
IMAGENET_PAIR = "resnet34-resnet18"
IMAGENET_ARCHS = {"teacher": "resnet34", "student": "resnet18"}
IMAGENET_ORDER = ["teacher", "student", "kd", "at", "sp", "cc", "crd", "crd_kd", "dkd", "dist"]
IMAGENET_PUBLISHED = {  # row -> (top-1 error, top-5 error)
    "teacher": (26.69, 8.58), "student": (30.25, 10.93), "kd": (29.34, 10.12), "at": (29.30, 10.00),
    "sp": (29.38, 10.20), "cc": (30.04, 10.83), "crd": (28.83, 9.87), "crd_kd": (28.62, 9.51),
    "dkd": (28.30, None),   # mdistiller README: ResNet-34 -> ResNet-18 DKD 71.70 top-1
    "dist": (27.93, None),  # hunto/DIST_KD README: ResNet-34 -> ResNet-18 DIST 72.07 top-1
}
IMAGENET_PUBLISHED_ELSEWHERE = {"dkd": "DKD: mdistiller README (71.70 top-1)",
                                "dist": "DIST: Huang et al. 2022, hunto/DIST_KD README (72.07 top-1)"}


def is_imagenet(name: str) -> bool:
    """A config of the ImageNet benchmark (``configs/imagenet/...``)."""
    return name.split("/", 1)[0] == "imagenet"


@dataclass
class Cell:
    final: list[float] = field(default_factory=list)
    best: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    incomplete: int = 0
    params: int | None = None  # of the run's (primary) model at inference: summary.json's `cost`
    flops: int | None = None   # one forward pass on one validation sample (FlopCounterMode)


def place(name: str) -> tuple[str, str]:
    """(row, column) of a config name: benchmark configs map to (method, pair); CIRKD's Cityscapes configs to
    (method, student), its teacher to ``('teacher', 'deeplabv3_r101')``."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[-3:-1] == ["cityscapes", "cirkd"]:
        if parts[-1] == f"{CIRKD_TEACHER}_teacher":
            return "teacher", CIRKD_TEACHER
        for student in CIRKD_STUDENTS:
            if parts[-1].startswith(student + "_"):
                return parts[-1][len(student) + 1:], student
    if len(parts) >= 3 and parts[-3] == "distill":
        return parts[-1], parts[-2]
    if len(parts) >= 2 and parts[-2] in ("teachers", "students"):
        return parts[-2][:-1], parts[-1]  # ('teacher', arch) / ('student', arch)
    return name, "-"


def summaries(roots: list[str | Path]) -> list[dict]:
    """Every ``summary.json`` under ``roots`` (files or folders searched recursively), in path order."""
    files = sorted({p for root in roots for p in
                    ([Path(root)] if Path(root).name == "summary.json" else Path(root).rglob("summary.json"))})
    if not files:
        raise FileNotFoundError(f"no summary.json under {', '.join(map(str, roots))}; train with tools/train.py first")
    return [json.loads(path.read_text()) for path in files]


def collect(roots: list[str | Path], metric: str | None = None, where=None) -> dict[tuple[str, str], Cell]:
    """Table 1's cells: ``(row, column) -> Cell`` of ``metric`` (default: each run's primary metric); ``where``
    (config name -> bool) keeps some runs only."""
    cells: dict[tuple[str, str], Cell] = {}
    for s in summaries(roots):
        key = metric or s.get("primary_metric") or "top1"
        name = config_name(s["config"])
        if key not in s.get("final", {}) or (where is not None and not where(name)):
            continue
        cell = cells.setdefault(place(name), Cell())
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
    other_cols = sorted({c for (_, c) in cells if c not in PAIRS and c != "-" and not _is_arch(c, cells)
                         and not _is_cirkd(c)})
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


def _is_cirkd(col: str) -> bool:
    return col in CIRKD_STUDENTS or col == CIRKD_TEACHER


def cirkd_table(cells: dict[tuple[str, str], Cell], which: str = "final", published: bool = False) -> str:
    """CIRKD's Cityscapes table (Markdown): methods x students, val mIoU (mean ± std over seeds), the teacher's
    row repeated under every student (they share it); ``published`` adds the published number in parentheses
    (``(-)`` where none was published)."""
    cols = [c for c in CIRKD_STUDENTS if published or any(k[1] == c for k in cells)]
    rows = [r for r in CIRKD_METHODS if published or any(k == (r, c) for c in cols for k in cells)]
    rows += sorted({r for r, c in cells if c in CIRKD_STUDENTS and r not in CIRKD_METHODS})
    incomplete = False

    def cell_text(row, col):
        nonlocal incomplete
        c = cells.get((row, CIRKD_TEACHER) if row == "teacher" else (row, col))
        text = fmt(getattr(c, which)) if c else ""
        if c and c.incomplete:
            text += "*"
            incomplete = True
        if published and row in CIRKD_PUBLISHED:
            ref = CIRKD_PUBLISHED[row][CIRKD_STUDENTS.index(col)]
            text = f"{text} ({ref:.2f})" if ref is not None else f"{text} (-)"
        return text.strip()

    label = {"final": "last evaluation", "best": "best evaluation"}[which]
    others = sorted({CIRKD_PUBLISHED_ELSEWHERE[r] for r in rows if r in CIRKD_PUBLISHED_ELSEWHERE}) if published else []
    source = "published CIRKD table" + (f" ({'; '.join(others)})" if others else "")
    lines = [f"Cityscapes val mIoU at the **{label}**, CIRKD's setting (mean ± std over seeds"
             + (f"; {source} in parentheses" if published else "") + ")", ""]
    header = ["Method"] + [CIRKD_STUDENT_NAMES[c] for c in cols]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    if cols:
        if published or any(k == ("teacher", CIRKD_TEACHER) for k in cells):
            lines.append("| " + " | ".join(["Teacher (DeepLabV3-R101)"] + [cell_text("teacher", c) for c in cols]) + " |")
        for r in rows:
            lines.append("| " + " | ".join([CIRKD_METHOD_NAMES.get(r, r)] + [cell_text(r, c) for c in cols]) + " |")
    counts = sorted({len(c.final) for k, c in cells.items() if _is_cirkd(k[1])})
    if counts:
        lines += ["", f"Seeds per cell: {', '.join(map(str, counts))}."]
    if incomplete:
        lines.append("\\* includes runs that stopped before the end of their schedule (e.g. --max-iters smoke runs).")
    return "\n".join(lines) + "\n"


def report(cells: dict[tuple[str, str], Cell], published: bool = False,
           imagenet: dict[str, dict[str, Cell]] | None = None) -> str:
    """Every table a set of runs fills: CIRKD's Cityscapes table when there are such runs, Table 3 for the
    ImageNet runs (``imagenet``, from :func:`collect_imagenet`), the CRD-shaped tables for the others (each for
    the last and the best evaluation)."""
    cirkd = {k: v for k, v in cells.items() if _is_cirkd(k[1])}
    rest = {k: v for k, v in cells.items() if not _is_cirkd(k[1])}
    parts = []
    if rest or not (cirkd or imagenet):
        parts += [table(rest, "final", published), table(rest, "best", published)]
    if cirkd:
        parts += [cirkd_table(cirkd, "final", published), cirkd_table(cirkd, "best", published)]
    if imagenet:
        parts += [imagenet_table(imagenet, "final", published), imagenet_table(imagenet, "best", published)]
    return "\n".join(parts)


def _is_arch(col: str, cells) -> bool:
    return any(k == ("teacher", col) or k == ("student", col) for k in cells)


# ------------------------------------------------------------------------------------------------ Table 3
def imagenet_column(row: str, col: str) -> str:
    """The Table 3 column of a run: its method for the ResNet-34 -> ResNet-18 pair (``teacher`` / ``student``
    for those architectures), else ``'<method> (<pair or arch>)'``."""
    if row in IMAGENET_ARCHS:
        return row if col == IMAGENET_ARCHS[row] else f"{row} ({col})"
    return row if col == IMAGENET_PAIR else f"{row} ({col})"


def collect_imagenet(roots: list[str | Path]) -> dict[str, dict[str, Cell]]:
    """Table 3's cells: ``column -> {'top1': Cell, 'top5': Cell}`` of top-1 / top-5 ERROR (100 - accuracy) of
    the ImageNet runs (configs under ``configs/imagenet/``)."""
    cells: dict[str, dict[str, Cell]] = {}
    for s in summaries(roots):
        name = config_name(s["config"])
        final = s.get("final", {})
        if not is_imagenet(name) or "top1" not in final:
            continue
        column = imagenet_column(*place(name))
        entry = cells.setdefault(column, {"top1": Cell(), "top5": Cell()})
        for metric in ("top1", "top5"):
            if metric not in final:
                continue
            cell = entry[metric]
            cell.final.append(100.0 - float(final[metric]))
            cell.best.append(100.0 - float(s.get("best", {}).get(metric, final[metric])))
            cell.seeds.append(s.get("seed"))
            cell.incomplete += 0 if s.get("completed", True) else 1
    return cells


def imagenet_table(cells: dict[str, dict[str, Cell]], which: str = "final", published: bool = False) -> str:
    """CRD's Table 3 as Markdown: columns Teacher, Student and the methods; rows top-1 and top-5 error (%),
    mean ± std over seeds at the last (``'final'``) or best (``'best'``) epoch; ``published`` adds the published
    errors in parentheses (and every published column)."""
    cols = [c for c in IMAGENET_ORDER if c in cells or (published and c in IMAGENET_PUBLISHED)]
    cols += sorted(c for c in cells if c not in IMAGENET_ORDER)
    label = {"final": "last epoch", "best": "best epoch"}[which]
    incomplete = False

    def text(col: str, metric: str) -> str:
        nonlocal incomplete
        c = cells.get(col, {}).get(metric)
        out = fmt(getattr(c, which)) if c else ""
        if c and c.incomplete:
            out += "*"
            incomplete = True
        if published and col in IMAGENET_PUBLISHED:
            ref = IMAGENET_PUBLISHED[col][0 if metric == "top1" else 1]
            out = f"{out} ({ref:.2f})" if ref is not None else f"{out} (-)"
        return out.strip()

    others = sorted({IMAGENET_PUBLISHED_ELSEWHERE[c] for c in cols if c in IMAGENET_PUBLISHED_ELSEWHERE})
    source = "CRD Table 3" + (f"; {'; '.join(others)}" if others else "")
    lines = [f"ImageNet, ResNet-34 → ResNet-18: top-1 / top-5 **error** (%) at the **{label}** (mean ± std over "
             f"seeds" + (f"; published errors in parentheses: {source}" if published else "") + ")", ""]
    header = [""] + [("CRD+KD" if c == "crd_kd" else METHOD_NAMES.get(c, c.capitalize() if c in IMAGENET_ARCHS
                                                                        else c)) for c in cols]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, name in (("top1", "Top-1 error"), ("top5", "Top-5 error")):
        lines.append("| " + " | ".join([name] + [text(c, metric) for c in cols]) + " |")
    counts = sorted({len(e["top1"].final) for e in cells.values()})
    if counts:
        lines += ["", f"Seeds per cell: {', '.join(map(str, counts))}."]
    if incomplete:
        lines.append("\\* includes runs that stopped before the end of their schedule (e.g. --max-iters smoke runs).")
    return "\n".join(lines) + "\n"
