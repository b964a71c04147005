#!/usr/bin/env python
"""Tables over repeated pipelines: one row per pipeline of a family, mean ± std over seeds.

    python tools/pipeline_table.py TABLE [ROOT] [--stages S ...] [--metrics M ...] [--out FILE]

TABLE is one of densekd's tables (densekd/pipelines/seeds.py):

  nyu_crossmodal    configs/pipelines/nyu_crossmodal/*.py: CRD's cross-modal NYU table (probe / fine-tune pixel
                    accuracy and mIoU of the depth student), the published numbers beside
  stl10_crossmodal  configs/pipelines/stl10_crossmodal/*.py: STL-10 L -> ab (linear probe and fine-tune top-1 of
                    the ab student)
  crd_table4        configs/pipelines/crd_table4/*.py: CRD's Table 4 (linear probe top-1 of the CIFAR-100
                    networks on STL-10 and TinyImageNet), the published numbers beside

ROOT (default work_dirs/pipelines/<TABLE>) holds one folder per pipeline (row), each with seed<S>/<stage>/
summary.json (a training stage) or probe_summary.json (a probe stage), as `python tools/pipeline.py
configs/pipelines/<TABLE>/<row>.py --seed S` writes them. Cells: mean ± sample std over seeds of each stage's
final metric; unfinished runs (and probes capped by --max-iters) are counted, not averaged. --stages and
--metrics print other columns (every stage x metric, without the published numbers).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.pipelines.seeds import TABLES, Column, seed_table  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(TABLES), help="which table")
    parser.add_argument("root", nargs="?", default=None, help="results folder (default work_dirs/pipelines/TABLE)")
    parser.add_argument("--stages", nargs="+", default=None, help="other columns: these stages ...")
    parser.add_argument("--metrics", nargs="+", default=None, help="... times these metrics")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    spec = TABLES[args.table]
    columns = None
    if args.stages or args.metrics:
        columns = [Column(s, m) for s in (args.stages or spec.stages) for m in (args.metrics or spec.metrics)]
    try:
        text, _ = seed_table(spec, args.root, columns)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
