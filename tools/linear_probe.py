#!/usr/bin/env python
"""Linear probe of a checkpoint's frozen features at one tap (classification or dense).

    python tools/linear_probe.py CONFIG CHECKPOINT --layer TAP [--mode auto|global|dense] [--work-dir DIR]
                                 [--cache-dir DIR] [--synthetic] [--data-root PATH] [--device cpu|cuda]
                                 [--cfg-options probe.wd_grid=[1e-4,1e-3] ...]

The model is CONFIG's ``model`` (or ``probe.model``) with CHECKPOINT's weights, frozen. The tap's features of
the probe's train and test splits (``probe.data``, default the config's ``data.train`` / ``data.val``, without
augmentation) are extracted once and cached; a linear classifier (pooled features) or a 1x1 conv head (per-pixel
features) is trained with the weight decay chosen on a held-out part of the train split, then evaluated on the
test split. Writes probe_summary.json, probe_summary.md and probe.log to the work dir (default
<run dir>/linear_probe/<tap>/ for a checkpoint in a run's checkpoints/ folder). Errors are one line (exit 2).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("checkpoint", help="a densekd checkpoint (best.pth / last.pth) or a plain state dict")
    parser.add_argument("--layer", default=None, help="the tap to probe (default: probe.layer of the config), e.g. "
                                                      "feats[-1], layer3, encoder.layer4, output.seg")
    parser.add_argument("--mode", default=None, choices=["auto", "global", "dense"],
                        help="pooled features + linear classifier, or per-pixel features + 1x1 conv head "
                             "(default: probe.mode, 'auto': dense when the labels are maps)")
    parser.add_argument("--work-dir", default=None, help="where the summary, the log and the feature cache go")
    parser.add_argument("--cache-dir", default=None, help="feature cache folder (default WORK_DIR/features)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from densekd.probe import run_probe
    from densekd.probe.runner import markdown

    try:
        cfg = prepare(args)
        summary = run_probe(cfg, args.checkpoint, args.work_dir, layer=args.layer, mode=args.mode, device=args.device,
                            cache_dir=args.cache_dir)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    print(markdown(summary), end="")
    return summary


if __name__ == "__main__":
    main()
