#!/usr/bin/env python
"""Gather summary.json files into a Markdown table shaped like CRD's Table 1.

    python tools/collect_results.py work_dirs/cifar100 [more dirs ...] [--metric top1] [--published] [--out FILE]

Rows: methods; columns: teacher -> student pairs; cells: mean ± std over seeds, one table for the
last epoch and one for the best epoch. Run seeds with `tools/train.py CONFIG --seed S` (work dirs
end in seed<S>/). `--published` prints CRD's published numbers in parentheses beside ours. Parameters and
FLOPs (summary.json's `cost`: the network at inference on one validation sample, torch's FlopCounterMode) go
into a cost table of each pair's teacher and student and into the columns of the single-run table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.results import collect, table  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="work dirs (searched recursively for summary.json)")
    parser.add_argument("--metric", default=None, help="metric to tabulate (default: each run's primary metric)")
    parser.add_argument("--published", action="store_true", help="show CRD Table 1's numbers beside ours")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    try:
        cells = collect(args.roots, args.metric)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    text = table(cells, "final", args.published) + "\n" + table(cells, "best", args.published)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
