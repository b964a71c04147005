#!/usr/bin/env python
"""Train a model, with or without distillation, from a config file.

    python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume]
                                 [--synthetic] [--data-root PATH] [--max-iters N] [--seed S]
                                 [--device cpu|cuda]
    torchrun --nproc_per_node=N tools/train.py CONFIG ...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, default_work_dir, fail, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--work-dir", default=None,
                        help="default: work_dirs/<config path under configs/>/ (plus seed<S>/ with --seed)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK_DIR/checkpoints/last.pth")
    parser.add_argument("--max-iters", type=int, default=None,
                        help="stop after N iterations, then evaluate and write the summary")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    from densekd.engine.trainer import Trainer

    try:
        cfg = prepare(args)
        trainer = Trainer(cfg, default_work_dir(cfg, args.work_dir, args.seed), device=args.device,
                          synthetic=args.synthetic, resume=args.resume, max_iters=args.max_iters)
    except USER_ERRORS as exc:
        fail(exc)
    try:
        return trainer.train()
    finally:
        from densekd.engine.distributed import teardown

        teardown()


if __name__ == "__main__":
    main()
