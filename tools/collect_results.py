#!/usr/bin/env python
"""Gather summary.json files into Markdown tables shaped like CRD's Table 1 (CIFAR-100), CRD's Table 3
(ImageNet) and CIRKD's Cityscapes table.

    python tools/collect_results.py work_dirs/cifar100 [more dirs ...] [--metric top1] [--published] [--out FILE]
    python tools/collect_results.py work_dirs/imagenet --published
    python tools/collect_results.py work_dirs/cityscapes/cirkd --published

Table 1: rows are methods, columns teacher -> student pairs; CIRKD's table: rows methods, columns its three
students (configs/cityscapes/cirkd/); cells mean ± std over seeds of the primary metric (or --metric). Table 3
(the runs of configs/imagenet/): columns Teacher, Student and the methods of ResNet-34 -> ResNet-18, rows
top-1 and top-5 error (100 - accuracy). Each table is printed for the last and for the best evaluation. Run
seeds with `tools/train.py CONFIG --seed S` (work dirs end in seed<S>/). `--published` prints the published
numbers in parentheses beside ours.
Parameters and FLOPs (summary.json's `cost`: the network at inference on one validation sample, torch's
FlopCounterMode) go into a cost table of each pair's teacher and student and into the columns of the single-run
table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.results import collect, collect_imagenet, is_imagenet, report  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+", help="work dirs (searched recursively for summary.json)")
    parser.add_argument("--metric", default=None, help="metric of Table 1 / CIRKD's table (default: each run's "
                                                        "primary metric)")
    parser.add_argument("--published", action="store_true", help="show the published numbers beside ours")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    try:
        cells = collect(args.roots, args.metric, where=lambda name: not is_imagenet(name))
        imagenet = collect_imagenet(args.roots)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    text = report(cells, args.published, imagenet=imagenet)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
