#!/usr/bin/env python
"""Synthesise a dataset from a frozen teacher (data-free distillation: DeepInversion, BNS, Inception, Gaussian).

    python tools/synthesize.py CONFIG [--work-dir DIR] [--output FILE] [--max-batches K] [--max-iters N]
                               [--overwrite] [--synthetic] [--data-root PATH] [--device cpu|cuda]
                               [--cfg-options synthesis.num_images=1024 ...]

CONFIG's ``synthesis`` section names the method, the teacher (model + checkpoint), the number of images, the batch
size, the iterations, the loss weights, the image size and normalisation (densekd/synthesis/settings.py). The
images go to WORK_DIR/images.h5 (default work dir: work_dirs/<config path under configs/>/), an HDF5 file that
configs read with data.train=dict(type='SynthesizedImages', path=...). Running the same command again continues a
stopped synthesis (finished batches are kept, the batch in progress resumes); --max-batches K stops after K more
batches; --max-iters N is a smoke run (one batch, at most N steps per phase). Ctrl-C / SIGTERM save the batch in
progress (exit 128 + signal). Errors are one line (exit 2).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, non_negative_int, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--work-dir", default=None, help="default: work_dirs/<config path under configs/>/")
    parser.add_argument("--output", default=None, help="the images file (default synthesis.output, else "
                                                       "WORK_DIR/images.h5)")
    parser.add_argument("--max-batches", type=non_negative_int, default=None,
                        help="synthesise at most K more batches now (run again to continue)")
    parser.add_argument("--max-iters", type=non_negative_int, default=None,
                        help="smoke run: a single batch, at most N steps per phase")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an earlier synthesis with other settings in the work dir first")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from densekd.engine.workdir import WorkDirError
    from densekd.synthesis.runner import Synthesis

    try:
        cfg = prepare(args)
        synthesis = Synthesis(cfg, args.work_dir, device=args.device, synthetic=args.synthetic,
                              max_iters=args.max_iters, overwrite=args.overwrite, output=args.output)
        summary = synthesis.run(args.max_batches)
    except (WorkDirError, *USER_ERRORS) as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    shown = {k: summary[k] for k in ("completed", "method", "num_images", "batches_done", "num_batches", "output",
                                     "teacher_top1", "time_s")}
    print(json.dumps(shown, indent=2))
    return summary


if __name__ == "__main__":
    main()
