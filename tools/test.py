#!/usr/bin/env python
"""Evaluate a checkpoint on the config's validation set (only that split is read).

    python tools/test.py CONFIG CHECKPOINT [--synthetic] [--data-root PATH] [--out FILE]

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
    parser.add_argument("--out", default=None, help="write the metrics as JSON to this file")
    args = parser.parse_args(argv)
    from densekd.engine.evaluate import evaluate_checkpoint

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


if __name__ == "__main__":
    main()
