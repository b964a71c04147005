#!/usr/bin/env python
"""Plot training curves of one or more runs from their metrics.jsonl.

    python tools/plot_curves.py WORK_DIR [WORK_DIR ...] [--keys loss loss/kd mIoU lr] [--labels A B ...]
                                [--out curves.png] [--log-y 'loss*'] [--title TEXT]

One subplot per key, x = iteration, one line per run (legend: the work dir's name or --labels): training series
(``loss``, ``loss/<term>``, ``lr``) from the training lines, validation metrics (``mIoU``, ``top1``, ``abs_rel``,
...) from the lines with ``split``. Keys may be patterns (``'loss/*'``: every term). Default keys: the loss and
its terms, the validation metrics and the learning rate. Writes the PNG (default ``curves.png`` in the first work
dir) and ``<out stem>.json`` with the plotted numbers. Needs matplotlib: ``pip install 'densekd[plot]'``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work_dirs", nargs="+", help="run folders holding metrics.jsonl")
    parser.add_argument("--keys", nargs="+", default=None, help="keys or patterns to plot, one subplot each")
    parser.add_argument("--labels", nargs="+", default=None, help="legend labels, one per work dir")
    parser.add_argument("--out", default=None, help="PNG file (default: FIRST_WORK_DIR/curves.png)")
    parser.add_argument("--log-y", nargs="+", default=[], metavar="KEY", help="keys (patterns) on a log axis")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    from densekd.engine.curves import load_runs, write_curves

    out = Path(args.out) if args.out else Path(args.work_dirs[0]) / "curves.png"
    try:
        runs = load_runs(args.work_dirs, args.labels)
        fig, data = write_curves(runs, out, args.keys, log_y=args.log_y, title=args.title)
    except (ImportError, FileNotFoundError, KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {text}", file=sys.stderr)
        raise SystemExit(2)
    print(f"{out} ({len(data)} plots: {', '.join(data)}; {len(runs)} runs); data in {out.with_suffix('.json')}")
    return fig, data


if __name__ == "__main__":
    main()
