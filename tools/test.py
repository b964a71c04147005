#!/usr/bin/env python
"""Evaluate a checkpoint on the config's validation set (only that split is read), or write its predictions in
the benchmark's format.

    python tools/test.py CONFIG CHECKPOINT [--synthetic] [--data-root PATH] [--out FILE]
    python tools/test.py CONFIG CHECKPOINT --format-only --out DIR [--overlay] [--cfg-options data.val.split=test]

--format-only predicts every data.val sample with the task's inference and writes the dataset's official result
files under DIR, without metrics (a test split has no labels): Cityscapes as label-id PNGs (train ids mapped back
to the official ids, uint8) in DIR/labelIds/<city>/<city>_<seq>_<frame>_leftImg8bit.png -- give DIR/labelIds to
cityscapesScripts (CITYSCAPES_RESULTS) or the server --; NYU-Depth v2 depth as 16-bit PNGs in millimetres
(0 = invalid) in DIR/depth/<id>.png and NYU-40 labels (class ids 1..40) in DIR/label/<id>.png. --overlay adds
the palette blended over the image (DIR/overlay/<id>.png; segmentation). DIR/predictions.json lists them.

A damaged or foreign CHECKPOINT is one line naming the file, what is wrong and what to do (exit 2).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("checkpoint", help="a densekd checkpoint (best.pth / last.pth) or a plain state dict")
    parser.add_argument("--out", default=None, help="write the metrics as JSON to this file (with --format-only: "
                                                    "the folder of the prediction files)")
    parser.add_argument("--format-only", action="store_true",
                        help="write benchmark-format predictions to --out DIR instead of computing metrics")
    parser.add_argument("--overlay", action="store_true", help="with --format-only: also the predictions blended "
                                                               "over the images (segmentation)")
    args = parser.parse_args(argv)
    from densekd.engine.evaluate import evaluate_checkpoint

    if args.format_only:
        return format_only(args)
    if args.overlay:
        fail(ValueError("--overlay goes with --format-only"))
    try:
        cfg = prepare(args)
        metrics, task = evaluate_checkpoint(cfg, args.checkpoint, device=args.device)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    text = json.dumps(metrics, indent=2)
    print(text)
    for name, values in (metrics.items() if all(isinstance(v, dict) for v in metrics.values()) else [("", metrics)]):
        report = task.metric_report(values)
        if report:
            print(f"\n{name}\n{report}" if name else "\n" + report)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return metrics


def format_only(args) -> dict:
    from densekd.engine.predictions import format_results

    if not args.out:
        fail(ValueError("--format-only needs --out DIR (the folder the prediction files go to)"))
    try:
        cfg = prepare(args)
        manifest = format_results(cfg, args.checkpoint, args.out, overlay=args.overlay, device=args.device)
    except (NotImplementedError, *USER_ERRORS) as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    files = ", ".join(f"{n} {kind} files in {manifest['folders'][kind]}" for kind, n in manifest["files"].items())
    print(f"{manifest['samples']} samples of {manifest['dataset']} ({manifest['split']}): {files}"
          + (f"; overlays in {manifest['overlays']}" if manifest["overlays"] else ""))
    return manifest


if __name__ == "__main__":
    main()
