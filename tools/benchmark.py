#!/usr/bin/env python
"""Measure training throughput and memory of a config, and whether the data loader or the step bounds it.

    python tools/benchmark.py CONFIG [--synthetic] [--data-root PATH] [--iters 20] [--warmup 3] [--quick]
                             [--device cpu|cuda] [--cfg-options ...] [--out FILE]
    python tools/benchmark.py imagenet [--synthetic] [--data-root PATH] [--quick] ...
    python tools/benchmark.py --suite cls|seg|seg-cirkd|depth [--methods KD CRD ...] [--device cpu|cuda]
                             [--out DIR] [--reps N] [--warmup N] [--threads N] [--quick]
    python tools/benchmark.py --suite pairwise-memory [--device cpu|cuda] [--nodes ...] [--max-nodes N]

With --suite it runs a per-method suite instead (densekd/bench/: every method's step of one teacher -> student
pair against the bound student step + teacher forward, interleaved rounds, per-step peak memory; JSON +
Markdown; see `python tools/benchmark.py --suite cls --help`). Without it, one CONFIG:

Builds the run exactly as tools/train.py does (teachers, distillation terms, AMP, channels_last, the loader's
workers and decoding) and times, after `warmup` batches each:

* the loader alone: `iters` batches fetched and moved to the device, with the dataset's device step (e.g.
  ImageNet's decode='device' decodes there): images/s the input pipeline delivers (the batches the workers
  prefetched, num_workers x prefetch_factor, are drained untimed first);
* the step alone: `iters` training steps on one batch already on the device: images/s the models sustain;
* end to end: `iters` steps each on a new batch, as training runs.

Under torchrun (`torchrun --nproc_per_node=N tools/benchmark.py CONFIG ...`) every process steps on its share of
the global batch (DDP); rank 0 reports, with `world_size` and the images/second of all processes together. It
reports seconds/iteration and images/second (per process) of each, `bound_by` ('data loading' when the loader
alone is slower than the step alone, else 'compute') and the peak memory (CUDA allocator peak on GPU, process
peak RSS on CPU) as JSON.

`imagenet` is the ImageNet case: configs/imagenet/distill/resnet34-resnet18/kd.py (KD, ResNet-34 -> ResNet-18).
With --synthetic it writes a small synthetic ImageNet tree of 375 x 500 JPEGs (the usual ImageNet size, 8 classes,
including a greyscale and a CMYK JPEG and a PNG named .JPEG) into the temporary folder once and reads it with the
real ImageNet loader, so the loader figure includes real JPEG decoding; the teacher stays random without its
torchvision weights. --quick times 3 iterations after 1 warm-up batch (the ImageNet case then uses a global batch
of 32 unless --cfg-options sets data.batch_size).
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

ROOT = Path(__file__).resolve().parents[1]
CASES = {"imagenet": ROOT / "configs/imagenet/distill/resnet34-resnet18/kd.py"}
TREE_IMAGES = {False: 256, True: 64}  # synthetic ImageNet tree: training images (normal / --quick)
TREE_SIZE = (375, 500)


def synthetic_imagenet_tree(images: int, size=TREE_SIZE, classes: int = 8) -> Path:
    """A synthetic ImageNet tree under the temporary folder, written once (atomically) and reused."""
    import os
    import shutil

    from densekd.data.synthetic_imagenet import SyntheticImageNet

    root = Path(tempfile.gettempdir()) / f"densekd-bench-imagenet-{images}-{size[0]}x{size[1]}"
    if (root / "DONE").is_file():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=root.parent))
    SyntheticImageNet.write_tree(tmp, classes=classes, train_per_class=max(1, images // classes), val_per_class=2,
                                 image_size=size, keep_pictures=False)
    (tmp / "DONE").write_text("complete\n")
    try:
        os.replace(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if any(a == "--suite" or a.startswith("--suite=") for a in argv):
        from densekd.bench.cli import main as suite_main

        return suite_main(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--iters", type=int, default=None, help="timed batches / steps of each measurement (20)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed batches / steps before each one (3)")
    parser.add_argument("--quick", action="store_true", help="3 timed iterations after 1 warm-up (a smoke test)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    iters = args.iters if args.iters is not None else (3 if args.quick else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if iters < 1 or warmup < 0:
        parser.error("--iters must be >= 1 and --warmup >= 0")
    import torch

    from densekd.engine.trainer import Trainer

    case = str(args.config) if str(args.config) in CASES else None
    synthetic = args.synthetic
    notes = []
    if case:
        args.config = str(CASES[case])
        if args.quick and not any(o.startswith("data.batch_size=") for o in args.cfg_options):
            args.cfg_options = ["data.batch_size=32"] + list(args.cfg_options)
            notes.append("--quick: data.batch_size=32")
        if synthetic and not args.data_root:
            tree = synthetic_imagenet_tree(TREE_IMAGES[args.quick])
            args.data_root, args.synthetic = str(tree), False  # the real loader on synthetic JPEG files
            args.cfg_options = list(args.cfg_options) + [f"data.{split}.index_cache={str(tree / 'index')!r}"
                                                         for split in ("train", "val")]
            notes.append(f"synthetic ImageNet tree of {TREE_SIZE[0]} x {TREE_SIZE[1]} JPEGs at {tree}")
    from densekd.engine import distributed as dist

    try:
        cfg = prepare(args)
        dist.setup(args.device)  # under torchrun: the process group first, so that every rank shares one work dir
        work_dir = dist.broadcast_object(tempfile.mkdtemp(prefix="densekd-bench-") if dist.is_main() else None)
        trainer = Trainer(cfg, work_dir, device=args.device, synthetic=synthetic)
    except USER_ERRORS as exc:
        fail(exc)
    trainer.strategy.train()
    cuda = trainer.device.type == "cuda"
    batch_size = trainer.batch_per_rank

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn, n_warm: int, n: int) -> float:
        for _ in range(n_warm):
            fn()
        sync()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        return (time.perf_counter() - start) / n

    loader = trainer.train_loader
    depth = loader.num_workers * (loader.prefetch_factor or 0)  # batches the workers hold ready: drained first
    loader_batches = trainer.batches(0)
    loader_s = timed(lambda: next(loader_batches), warmup + depth, iters)
    loader_batches.close()
    fixed = next(trainer.batches(0))
    step_s = timed(lambda: trainer.train_iteration(fixed), warmup, iters)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    batches = trainer.batches(0)
    end_s = timed(lambda: trainer.train_iteration(next(batches)), warmup, iters)
    rate = lambda s: round(batch_size / s, 2)  # noqa: E731
    result = {
        "config": str(args.config), "case": case, "device": str(trainer.device), "world_size": trainer.world,
        "batch_per_process": batch_size, "num_workers": trainer.train_loader.num_workers, "amp": trainer.amp,
        "channels_last": trainer.channels_last, "strategy": type(trainer.strategy).__name__,
        **trainer.strategy.summary(), "iters_timed": iters, "warmup": warmup,
        "loader_seconds_per_batch": round(loader_s, 4), "loader_images_per_second": rate(loader_s),
        "step_seconds_per_iter": round(step_s, 4), "step_images_per_second": rate(step_s),
        "step_images_per_second_all_processes": round(rate(step_s) * trainer.world, 2),
        "seconds_per_iter": round(end_s, 4), "images_per_second": rate(end_s),
        "bound_by": "data loading" if loader_s > step_s else "compute",
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else
        round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "memory_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "notes": notes,
    }
    text = json.dumps(result, indent=2)
    if dist.is_main():  # under torchrun rank 0 speaks for all (each rank steps in lockstep with the others)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
    trainer.records.close()
    trainer = None  # noqa: F841 - dropped before the process group goes (see distributed.teardown)
    dist.teardown()
    return result


if __name__ == "__main__":
    main()
