#!/usr/bin/env python
"""Decode every image and label of a config's datasets once and list all bad files together.

    python tools/check_data.py CONFIG [--data-root PATH] [--split train val] [--workers N]
                                      [--cfg-options k=v ...] [--synthetic]

Run it before a long training: a corrupt or truncated file is otherwise met mid-epoch, hours in. Exit 0 when
every sample reads, 1 when some do not (each listed with its files and the reason), 2 on a config error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--split", nargs="+", default=["train", "val"], choices=["train", "val"])
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: data.num_workers, at most the usable cores)")
    args = parser.parse_args(argv)
    from densekd.data.check import check_config, report

    try:
        cfg = prepare(args)
    except USER_ERRORS as exc:
        fail(exc)
    workers = args.workers if args.workers is not None else int((cfg.get("data") or {}).get("num_workers", 0))
    bad, counts = check_config(cfg, splits=args.split, num_workers=workers)
    print(report(bad, counts), file=sys.stderr if bad else sys.stdout)
    if bad:
        raise SystemExit(1)
    return 0


if __name__ == "__main__":
    main()
