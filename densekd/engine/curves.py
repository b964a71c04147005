"""Training curves from runs' ``metrics.jsonl`` (``tools/plot_curves.py``, the demos' ``curves.png``).

``metrics.jsonl`` (:mod:`densekd.engine.records`) holds one JSON object per line: **training lines** (one per log
window: ``iter``, ``epoch``, ``lr``, ``loss`` and each term ``loss/<name>``, means over the window) and
**validation lines** (``split: 'val'``, ``iter``, ``epoch`` and the task's metrics, other evaluated models' as
``<name>/<metric>``). Lines of an initialisation phase (``init_iter`` instead of ``iter``) are not plotted. A
key is looked up in both kinds: ``loss`` and ``lr`` are training series, ``mIoU`` a validation one. Non-finite
values (written as the strings ``'nan'`` / ``'inf'``) plot as gaps. Should an iteration appear twice (a run
continued after its records were cut short), its last line wins.

:func:`plot_curves` draws one subplot per key (patterns such as ``'loss/*'`` expand to every matching key), one
line per run and split, x = iteration, with matplotlib's Agg canvas (no display needed), and returns the figure
and the plotted data -- the same data :func:`write_curves` puts into the JSON sidecar beside the PNG.
"""
from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Sequence

INSTALL = "pip install 'densekd[plot]' (or: pip install matplotlib)"


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "infinity", "-infinity"):
        return float(v)
    return None


def read_metrics(work_dir: str | Path) -> dict[str, dict[int, dict]]:
    """``{'train': {iter: line}, 'val': {iter: line}}`` of a run's ``metrics.jsonl`` (``work_dir`` may also be the
    file itself). A missing file is a FileNotFoundError; a line that is not JSON (a run killed mid-write) is
    skipped."""
    path = Path(work_dir)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.jsonl in {work_dir} (a run's work dir holds one; train with "
                                f"tools/train.py first)")
    out: dict[str, dict[int, dict]] = {"train": {}, "val": {}}
    with open(path) as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("iter"), int):
                continue
            split = "val" if entry.get("split") else "train"
            out[split][entry["iter"]] = entry
    return out


def series(records: dict[str, dict[int, dict]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{split: (iterations, values)}`` of ``key`` in each split that has it (sorted by iteration)."""
    out = {}
    for split, rows in records.items():
        xs, ys = [], []
        for it in sorted(rows):
            v = _number(rows[it].get(key))
            if v is not None:
                xs.append(it)
                ys.append(v)
        if xs:
            out[split] = (xs, ys)
    return out


def numeric_keys(records: dict[str, dict[int, dict]]) -> list[str]:
    """Every plottable key of a run, in first-seen order (``iter``, ``epoch``, ``split`` left out)."""
    keys: dict[str, None] = {}
    for rows in records.values():
        for entry in rows.values():
            for k, v in entry.items():
                if k not in ("iter", "epoch", "split") and _number(v) is not None:
                    keys.setdefault(k, None)
    return list(keys)


def default_keys(runs: Sequence[dict]) -> list[str]:
    """``loss``, every ``loss/<term>``, the validation metrics (per-class IoUs and other models' metrics left
    out) and ``lr``, over all runs."""
    found: dict[str, None] = {}
    for run in runs:
        for k in numeric_keys(run["records"]):
            found.setdefault(k, None)
    losses = [k for k in found if k == "loss" or k.startswith("loss/")]
    val = [k for k in found if k not in losses and k != "lr" and "/" not in k]
    return losses + val + (["lr"] if "lr" in found else [])


def expand_keys(patterns: Sequence[str], runs: Sequence[dict], strict: bool = True) -> list[str]:
    """The keys to plot: each pattern as it is, or (with ``*``, ``?``, ``[``) every matching key of any run, in
    first-seen order. A key or pattern no run has is a KeyError listing the keys there are (``strict``) or left
    out."""
    available: dict[str, None] = {}
    for run in runs:
        for k in numeric_keys(run["records"]):
            available.setdefault(k, None)
    keys: dict[str, None] = {}
    for pattern in patterns:
        hits = [k for k in available if fnmatch.fnmatchcase(k, pattern)] if any(c in pattern for c in "*?[") else \
            ([pattern] if pattern in available else [])
        if not hits and strict:
            raise KeyError(f"no run has {pattern!r} in its metrics.jsonl; keys there: {', '.join(available)}")
        for k in hits:
            keys.setdefault(k, None)
    return list(keys)


def load_runs(work_dirs: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[dict]:
    """``[{'label', 'work_dir', 'records'}]``; labels default to the work dirs' names (made unique by their
    parents when two runs share one, e.g. ``seed0``)."""
    if labels is not None and len(labels) != len(work_dirs):
        raise ValueError(f"{len(labels)} labels for {len(work_dirs)} work dirs; give one label per run")
    if labels is None:
        labels = [Path(w).resolve().name for w in work_dirs]
        if len(set(labels)) < len(labels):
            labels = ["/".join(Path(w).resolve().parts[-2:]) for w in work_dirs]
    return [dict(label=str(lab), work_dir=str(w), records=read_metrics(w)) for lab, w in zip(labels, work_dirs)]


def curve_data(runs: Sequence[dict], keys: Sequence[str]) -> dict:
    """``{key: [{'run', 'split', 'x', 'y'}]}``: what :func:`plot_curves` draws (a run without a key is absent
    from its list)."""
    data = {}
    for key in keys:
        lines = []
        for run in runs:
            for split, (xs, ys) in series(run["records"], key).items():
                lines.append(dict(run=run["label"], split=split, x=xs, y=[None if not math.isfinite(v) else v
                                                                             for v in ys]))
        data[key] = lines
    return data


def plot_curves(runs: Sequence[dict], keys: Sequence[str] | None = None, strict: bool = True, log_y: Sequence[str] = (),
                title: str | None = None):
    """``(figure, data)``: one subplot per key (grid of up to 3 columns), a line per run and split (legend:
    the run's label, ``'(val)'`` added when a key has both splits), x = iteration. ``keys`` default to
    :func:`default_keys`; patterns expand (:func:`expand_keys`). ``log_y``: keys (or patterns) drawn on a log
    axis. Requires matplotlib (an ImportError saying how to install it otherwise)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError(f"plotting curves needs matplotlib, which is not installed: {INSTALL}") from None
    if not runs:
        raise ValueError("no runs to plot")
    keys = expand_keys(keys, runs, strict) if keys else default_keys(runs)
    if not keys:
        raise KeyError("none of the keys is in any run's metrics.jsonl")
    data = curve_data(runs, keys)
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.6 * cols, 3.3 * rows), layout="constrained")
    colours = {run["label"]: f"C{i % 10}" for i, run in enumerate(runs)}
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        splits = {line["split"] for line in data[key]}
        for line in data[key]:
            label = line["run"] + (" (val)" if line["split"] == "val" and len(splits) > 1 else "")
            ys = [float("nan") if v is None else v for v in line["y"]]
            marker = "o" if line["split"] == "val" or len(line["x"]) < 3 else None
            ax.plot(line["x"], ys, label=label, color=colours[line["run"]], marker=marker, markersize=3,
                    linestyle="--" if line["split"] == "val" and len(splits) > 1 else "-")
        ax.set_title(key + (" (val)" if splits == {"val"} else ""))
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if any(fnmatch.fnmatchcase(key, p) for p in log_y):
            ax.set_yscale("log")
        if data[key]:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    return fig, data


def write_curves(runs: Sequence[dict], out: str | Path, keys: Sequence[str] | None = None, strict: bool = True,
                 log_y: Sequence[str] = (), title: str | None = None, dpi: int = 100):
    """:func:`plot_curves` saved as the PNG ``out`` with ``<out stem>.json`` beside it (``{'runs': [label, work
    dir], 'keys', 'curves': data}``); returns ``(figure, data)``."""
    fig, data = plot_curves(runs, keys, strict, log_y, title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    sidecar = dict(runs=[dict(label=r["label"], work_dir=r["work_dir"]) for r in runs], keys=list(data),
                   curves=data)
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return fig, data
