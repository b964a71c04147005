#!/usr/bin/env python
"""Write the HHA image of every NYU-Depth v2 labeled frame (densekd's HHA encoding, see densekd/data/hha.py).

    python tools/make_hha.py ROOT [--mat-file nyu_depth_v2_labeled.mat] [--out hha] [--pattern '{frame:04d}.png']
                                  [--depth-key depths] [--overwrite]

ROOT holds nyu_depth_v2_labeled.mat; the PNGs go to ROOT/OUT/<pattern> (frame = 1-based frame number), which
is what `NYUDepthV2(hha='hha')` and the configs under configs/nyu/crossmodal/*hha* read. Frames already written
are kept (the tool can be rerun after an interruption) unless --overwrite. About 0.1 s a frame on one core.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from densekd.data.nyu import HHA_PATTERN, write_hha_folder

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder holding nyu_depth_v2_labeled.mat")
    parser.add_argument("--mat-file", default="nyu_depth_v2_labeled.mat")
    parser.add_argument("--out", default="hha", help="output folder, relative to ROOT (default: hha)")
    parser.add_argument("--pattern", default=HHA_PATTERN, help="file name per frame; fields {frame} (1-based), {index}")
    parser.add_argument("--depth-key", default="depths", choices=["depths", "rawDepths"],
                        help="the in-painted depths (default) or the raw Kinect depths")
    parser.add_argument("--overwrite", action="store_true", help="recompute frames whose file exists")
    args = parser.parse_args(argv)
    try:
        folder, n = write_hha_folder(args.root, args.mat_file, args.out, args.pattern, args.depth_key,
                                     args.overwrite)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} HHA images to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
