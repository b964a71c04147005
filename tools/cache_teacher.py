#!/usr/bin/env python
"""Write the offline teacher cache of a distillation config: every teacher tap its terms read, on every
(sample, view) of its training set, in one HDF5 file that training then reads instead of running the teachers.

    python tools/cache_teacher.py CONFIG [--out FILE] [--dtype float16|float32] [--compression lzf|gzip|none]
                                  [--batch-size B] [--max-gb G] [--synthetic] [--data-root PATH]
                                  [--device auto|cpu|cuda] [--cfg-options ...]

The training set must have a finite set of views (densekd/data/finite_views.py: CIFAR's 162 crop offsets x flips,
or any dataset without augmentation). --out defaults to the config's ``teacher_cache`` path, else
work_dirs/<config path under configs/>/teacher_cache.h5; an existing file there is replaced once the new one is
complete (it grows under a hidden .<name>.partial beside it, then is fsynced and renamed). An interrupted run
leaves the old file in place and is continued by the next run of the same plan after its last finished block
(same dataset, teachers and their weights, taps, dtype, compression; --no-resume starts over). The
size before compression (samples x views x tap values x bytes) is printed first and a cache above --max-gb
(default 20) is refused. Then train with ``--cfg-options teacher_cache=FILE`` (or ``teacher_cache = 'FILE'`` in the
config). Errors are one line (exit 2).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, default_work_dir, fail, positive_int, prepare  # noqa: E402


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--out", default=None, help="the cache file (default: the config's teacher_cache, else "
                                                    "work_dirs/<config>/teacher_cache.h5)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--compression", default="lzf", choices=["lzf", "gzip", "none"])
    parser.add_argument("--batch-size", type=positive_int, default=256, help="views per teacher forward")
    parser.add_argument("--max-gb", type=float, default=20.0, help="refuse a cache larger than this (GB, before "
                                                                   "compression)")
    parser.add_argument("--no-resume", action="store_true", help="start over even where an unfinished cache of "
                                                                 "the same plan is there to continue")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from densekd.data.teacher_cache import config_path
    from densekd.distill.cache import write_config_cache
    from densekd.engine import distributed as dist

    bars = []

    def progress(total: int):
        bars.append(tqdm(total=total, unit="view", desc="teacher cache", file=sys.stderr))
        return bars[-1].update

    try:
        cfg = prepare(args)
        out = args.out or (config_path(cfg["teacher_cache"]) if cfg.get("teacher_cache") else
                           default_work_dir(cfg, None) / "teacher_cache.h5")
        path = write_config_cache(cfg, out, synthetic=args.synthetic, dtype=args.dtype, compression=args.compression,
                                  batch_size=args.batch_size, max_gb=args.max_gb, device=dist.setup(args.device),
                                  log=lambda msg: print(msg, file=sys.stderr), progress=progress,
                                  resume=not args.no_resume)
    except (*USER_ERRORS, OSError) as exc:
        fail(exc)
    finally:
        for bar in bars:
            bar.close()
    print(f"wrote {path}; train with --cfg-options teacher_cache={str(path)!r}")
    return path


if __name__ == "__main__":
    main()
