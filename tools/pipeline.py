#!/usr/bin/env python
"""Run a multi-stage pipeline: several trainings in order, later stages reading earlier stages' checkpoints.

    python tools/pipeline.py PIPELINE_CONFIG [--work-dir DIR] [--synthetic] [--data-root PATH | TYPE=PATH ...]
                             [--max-iters N] [--seed S] [--device cpu|cuda] [--only NAME ...]
                             [--cfg-options k=v ...]

Stages run in order in this process; each trains in <work dir>/<stage name>/. A finished stage is
skipped, an interrupted one (checkpoints/last.pth, no finished summary.json) resumes, so rerunning the
same command continues where it stopped. --max-iters, --cfg-options, --seed, --synthetic and --data-root
apply to every stage; a pipeline whose stages read several datasets takes one root per dataset type
(--data-root CIFAR100=DIR STL10=DIR TinyImageNet=DIR). The table of all stages goes to <work dir>/pipeline.md
and pipeline.json. Stages of kind='probe' linearly probe a checkpoint; stages of kind='synthesize' synthesise a dataset from a teacher
(tools/synthesize.py's work), read by later stages as '{NAME.data}'.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_cfg_options, add_data_root, fail, fail_after_start, non_negative_int  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipeline", help="path to a pipeline config .py file (with `stages = [...]`)")
    parser.add_argument("--work-dir", default=None,
                        help="pipeline work dir; default: work_dirs/<pipeline config path under configs/>/ "
                             "(plus seed<S>/ with --seed); stage NAME trains in WORK_DIR/NAME/")
    parser.add_argument("--synthetic", action="store_true",
                        help="replace every dataset by its built-in synthetic stand-in (smoke runs, tests)")
    add_data_root(parser, " (every stage)")
    parser.add_argument("--max-iters", type=non_negative_int, default=None,
                        help="stop every stage after N iterations (a smoke run); a stage with such a run is finished")
    parser.add_argument("--seed", type=int, default=None, help="seed of every stage")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--only", nargs="+", default=[], metavar="NAME",
                        help="run only these stages (the inputs they read must exist)")
    add_cfg_options(parser, "override settings of every stage, e.g. data.batch_size=32 (repeatable)")
    args = parser.parse_args(argv)
    from densekd.engine.distributed import teardown
    from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline

    try:
        pipeline = load_pipeline(args.pipeline, cli_options=args.cfg_options, work_dir=args.work_dir,
                                 seed=args.seed, data_root=args.data_root, synthetic=args.synthetic,
                                 only=args.only)
    except USER_ERRORS as exc:
        fail(exc)
    runner = PipelineRunner(pipeline, device=args.device, synthetic=args.synthetic, max_iters=args.max_iters,
                            only=args.only)
    try:
        results = runner.run()
    except PipelineError as exc:
        fail(exc)
    except Exception as exc:  # noqa: BLE001 - a stage failed after start-up: one line, traceback in its train.log
        fail_after_start(exc)
    finally:
        teardown()
    print()
    print(runner.table(), end="")
    return results


if __name__ == "__main__":
    main()
