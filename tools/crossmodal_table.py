#!/usr/bin/env python
"""CRD's cross-modal NYU table from the cross-modal pipelines' results.

    python tools/crossmodal_table.py [ROOT] [--stages probe finetune] [--metrics pixel_acc mIoU] [--out FILE]

ROOT (default work_dirs/pipelines/nyu_crossmodal) holds one folder per pipeline of
configs/pipelines/nyu_crossmodal/ (random_init, kd, kd_at, fitnet, crd), each with seed<S>/<stage>/summary.json
as `python tools/pipeline.py configs/pipelines/nyu_crossmodal/<row>.py --seed S` writes them. Cells: mean ± std
over seeds of the final metrics of each stage (the depth student judged by 40-class segmentation with a head
on frozen features, `probe`, and after full fine-tuning, `finetune`); CRD's published numbers beside.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.pipelines.seeds import CRD_NYU_PUBLISHED, CRD_NYU_ROWS, ROW_NAMES, collect, table  # noqa: E402


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default="work_dirs/pipelines/nyu_crossmodal")
    parser.add_argument("--stages", nargs="+", default=["probe", "finetune"])
    parser.add_argument("--metrics", nargs="+", default=["pixel_acc", "mIoU"])
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    try:
        results = collect(args.root, args.stages, args.metrics)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
    published = CRD_NYU_PUBLISHED if args.metrics == ["pixel_acc", "mIoU"] else None
    text = table(results, args.stages, args.metrics, CRD_NYU_ROWS, ROW_NAMES, published)
    text += ("\nPublished: CRD (Tian et al., ICLR 2020), NYU-Depth v2 RGB -> depth transfer, pixel accuracy / mIoU "
             "(%) under the paper's protocol.\n") if published else ""
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return text


if __name__ == "__main__":
    main()
