#!/usr/bin/env python
"""CRD's cross-modal NYU table: ``python tools/pipeline_table.py nyu_crossmodal`` under its earlier name.

    python tools/crossmodal_table.py [ROOT] [--stages probe finetune] [--metrics pixel_acc mIoU] [--out FILE]

ROOT (default work_dirs/pipelines/nyu_crossmodal) holds one folder per pipeline of
configs/pipelines/nyu_crossmodal/ (random_init, kd, kd_at, fitnet, crd), each with seed<S>/<stage>/summary.json
as `python tools/pipeline.py configs/pipelines/nyu_crossmodal/<row>.py --seed S` writes them. Cells: mean ± std
over seeds of the final metrics of each stage (the depth student judged by 40-class segmentation with a head
on frozen features, `probe`, and after full fine-tuning, `finetune`); CRD's published numbers beside. The other
tables (STL-10 L -> ab, CRD Table 4) are in tools/pipeline_table.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline_table  # noqa: E402


def main(argv=None) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        raise SystemExit(0)
    return pipeline_table.main(["nyu_crossmodal"] + args)


if __name__ == "__main__":
    main()
