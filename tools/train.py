#!/usr/bin/env python
"""Train a model, with or without distillation, from a config file.

    python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume | --overwrite]
                                 [--synthetic] [--data-root PATH] [--max-iters N] [--seed S]
                                 [--device cpu|cuda] [--check-data]
    torchrun --nproc_per_node=N tools/train.py CONFIG ...

A work dir that holds an earlier run is never overwritten silently: continue that run with --resume, start
elsewhere with --work-dir, or replace it with --overwrite. Errors print one line (exit 2 at start-up, 1 after
it, with the traceback in WORK_DIR/train.log); Ctrl-C / SIGTERM save last.pth and exit 128 + signal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import (USER_ERRORS, add_config_args, default_work_dir, fail, fail_after_start,  # noqa: E402
                                   non_negative_int, prepare)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--work-dir", default=None,
                        help="default: work_dirs/<config path under configs/>/ (plus seed<S>/ with --seed)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK_DIR/checkpoints/last.pth")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the earlier run in WORK_DIR (checkpoints, records) and start afresh")
    parser.add_argument("--max-iters", type=non_negative_int, default=None,
                        help="stop after N iterations, then evaluate and write the summary")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--check-data", action="store_true",
                        help="first decode every training and validation sample once; list all bad files and stop "
                             "if there are any (as tools/check_data.py)")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume continues the run in the work dir and --overwrite replaces it: give one of them")
    from densekd.engine.trainer import Trainer

    try:
        cfg = prepare(args)
        if args.check_data:
            from densekd.data.check import check_config, report

            bad, counts = check_config(cfg, num_workers=int((cfg.get("data") or {}).get("num_workers", 0)))
            print(report(bad, counts), file=sys.stderr if bad else sys.stdout)
            if bad:
                raise SystemExit(2)
        trainer = Trainer(cfg, default_work_dir(cfg, args.work_dir, args.seed), device=args.device,
                          synthetic=args.synthetic, resume=args.resume, max_iters=args.max_iters,
                          overwrite=args.overwrite)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:  # e.g. a work dir that cannot be written
        fail(exc)
    try:
        return trainer.train()
    except Exception as exc:  # noqa: BLE001 - after start-up: one line, the traceback is in train.log
        fail_after_start(exc)
    finally:
        from densekd.engine.distributed import teardown

        del trainer  # its DDP wrappers hold the process group: let teardown free it before the interpreter exits
        teardown()


if __name__ == "__main__":
    main()
