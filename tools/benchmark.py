#!/usr/bin/env python
"""Measure training throughput and memory of a config.

    python tools/benchmark.py CONFIG [--synthetic] [--data-root PATH] [--iters 20] [--warmup 3]
                             [--device cpu|cuda] [--cfg-options ...] [--out FILE]

Builds the run exactly as tools/train.py does (teachers, distillation terms, AMP, channels_last),
times `iters` training steps after `warmup`, and reports seconds/iteration, images/second and peak
memory (CUDA allocator peak on GPU, process peak RSS on CPU) as JSON.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    from densekd.engine.trainer import Trainer

    try:
        cfg = prepare(args)
        trainer = Trainer(cfg, tempfile.mkdtemp(prefix="densekd-bench-"), device=args.device, synthetic=args.synthetic)
    except USER_ERRORS as exc:
        fail(exc)
    trainer.strategy.train()
    batches = trainer.batches(0)
    cuda = trainer.device.type == "cuda"

    def step():
        trainer.train_iteration(next(batches))

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.iters
    result = {
        "config": str(args.config), "device": str(trainer.device), "world_size": trainer.world,
        "batch_per_process": trainer.batch_per_rank, "amp": trainer.amp, "channels_last": trainer.channels_last,
        "strategy": type(trainer.strategy).__name__, **trainer.strategy.summary(), "iters_timed": args.iters,
        "seconds_per_iter": round(seconds, 4), "images_per_second": round(trainer.batch_per_rank / seconds, 2),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else
        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    trainer.records.close()
    return result


if __name__ == "__main__":
    main()
