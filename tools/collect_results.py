#!/usr/bin/env python
"""Gather summary.json files into Markdown tables shaped like CRD's Table 1 and CIRKD's Cityscapes table.

    python tools/collect_results.py work_dirs/cifar100 [more dirs ...] [--metric top1] [--published] [--out FILE]
    python tools/collect_results.py work_dirs/cityscapes/cirkd --published

Rows: methods; columns: teacher -> student pairs (CIFAR-100) or the three students of CIRKD's setting
(configs/cityscapes/cirkd/); cells: mean ± std over seeds, one table for the last and one for the best
epoch / evaluation. Run seeds with `tools/train.py CONFIG --seed S` (work dirs end in seed<S>/).
`--published` prints the published numbers (CRD's Table 1; CIRKD's Cityscapes table) in parentheses beside ours.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.results import collect, report  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="work dirs (searched recursively for summary.json)")
    parser.add_argument("--metric", default=None, help="metric to tabulate (default: each run's primary metric)")
    parser.add_argument("--published", action="store_true",
                        help="show the published numbers (CRD Table 1, CIRKD's Cityscapes table) beside ours")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    try:
        cells = collect(args.roots, args.metric)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    text = report(cells, args.published)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
