"""``python tools/benchmark.py --suite cls|seg|seg-cirkd|depth|pairwise-memory [options]``.

    python tools/benchmark.py --suite cls [--methods KD CRD ...] [--device cpu|cuda] [--out DIR]
                              [--reps 7] [--warmup 2] [--threads 1] [--quick]
    python tools/benchmark.py --suite pairwise-memory [--device cpu|cuda] [--nodes 1024 ...] [--max-nodes N]

A suite builds, in one process, the student-alone step, the teacher forward and every method's training step of
one teacher -> student pair (:mod:`densekd.bench.suites`), times them in interleaved rounds and measures each
step's peak memory (:mod:`densekd.bench.runner`, :mod:`densekd.bench.measure`). It writes
``DIR/benchmark_<suite>.json`` (raw timings, environment, sizes) and ``DIR/benchmark_<suite>.md`` (the table).

Sizes: the suite's CPU size on a CPU, its paper size on CUDA; ``--quick`` the tiny smoke size with 2 rounds
after 1 warm-up; ``--batch-size`` / ``--image-size H W`` override any of them. ``--threads`` sets
``torch.set_num_threads`` (default 1 on a CPU, PyTorch's default on CUDA).
"""
from __future__ import annotations

import argparse
import sys

from densekd.bench.suites import SUITES, Size

PAIRWISE = "pairwise-memory"


def parser() -> argparse.ArgumentParser:
    from densekd.engine.launch import add_cfg_options, non_negative_int, positive_int

    p = argparse.ArgumentParser(prog="tools/benchmark.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, choices=[*SUITES, PAIRWISE])
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME",
                   help="methods of the suite to time (default: all; names in any case)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default="work_dirs/benchmark", help="folder of benchmark_<suite>.json / .md")
    p.add_argument("--reps", type=positive_int, default=None, help="timed rounds (7; pairwise-memory: 3)")
    p.add_argument("--warmup", type=non_negative_int, default=None, help="untimed rounds first (2; pairwise: 1)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default 1 on a CPU)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds after 1 warm-up: a smoke test")
    p.add_argument("--batch-size", type=positive_int, default=None, help="per-process batch (overrides the size)")
    p.add_argument("--image-size", type=positive_int, nargs=2, default=None, metavar=("H", "W"),
                   help="training crop of dense suites (overrides the size)")
    p.add_argument("--data-root", default=None, help="real data instead of the synthetic stand-ins")
    p.add_argument("--mmap-threshold", type=positive_int, default=None, metavar="BYTES",
                   help="CPU: fix glibc's mmap threshold (e.g. 1048576) so that RSS readings show allocations, not "
                        "heap fragmentation (default: glibc's own behaviour, as training sees it)")
    p.add_argument("--no-loader-line", action="store_true", help="skip the loader-fed vs prefetched line")
    add_cfg_options(p, "overrides applied to every config of the suite, after its size")
    p.add_argument("--nodes", type=positive_int, nargs="+", default=None,
                   help="pairwise-memory: node counts (1024 2048 4096 8192 16384 32768)")
    p.add_argument("--max-nodes", type=positive_int, default=None,
                   help="pairwise-memory: skip larger counts (default 8192 on a CPU, none on CUDA)")
    p.add_argument("--algorithm", choices=("chunked", "gram", "auto"), default="chunked",
                   help="pairwise-memory: PairWiseKD's algorithm (chunked N x N blocks, the default here; gram: the "
                        "channel Gram form the loss takes by itself for such graphs)")
    p.add_argument("--channels", type=positive_int, nargs=2, default=(128, 512), metavar=("STUDENT", "TEACHER"),
                   help="pairwise-memory: channels of the two maps (PSPNet-R18 / -R101 'decoder': 128 512)")
    return p


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv=None) -> dict:
    from densekd.bench import report
    from densekd.engine.launch import USER_ERRORS, fail

    p = parser()
    args = p.parse_args(argv)
    if args.suite == PAIRWISE and (args.methods or args.image_size or args.data_root):
        p.error("--methods, --image-size and --data-root apply to the method suites, not to pairwise-memory")
    if args.suite != PAIRWISE and (args.nodes or args.max_nodes):
        p.error("--nodes and --max-nodes apply to --suite pairwise-memory only")
    device = _device(args.device)
    threads = args.threads if args.threads is not None else (1 if device == "cpu" else None)
    reps = args.reps if args.reps is not None else (2 if args.quick else 3 if args.suite == PAIRWISE else 7)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick or args.suite == PAIRWISE else 2)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    malloc_note = None
    if args.mmap_threshold and device == "cpu":
        from densekd.bench.measure import fix_mmap_threshold

        malloc_note = (f"glibc mmap threshold fixed at {args.mmap_threshold} bytes (mallopt)"
                       if fix_mmap_threshold(args.mmap_threshold) else "--mmap-threshold: no glibc mallopt here")
    try:
        if args.suite == PAIRWISE:
            from densekd.bench.pairwise import DEFAULT_NODES, run_pairwise

            nodes = args.nodes or ((256, 512, 1024) if args.quick else DEFAULT_NODES)
            result = run_pairwise(nodes, device, batch=args.batch_size or 1, channels=tuple(args.channels),
                                  reps=reps, warmup=warmup, max_nodes=args.max_nodes, progress=_bar("nodes"),
                                  algorithm=args.algorithm)
        else:
            from densekd.bench.runner import SuiteRun, run_suite

            suite = SUITES[args.suite]
            methods = [suite.method(name) for name in args.methods] if args.methods else list(suite.methods)
            size_name = "quick" if args.quick else ("cuda" if device == "cuda" else "cpu")
            size = suite.sizes[size_name]
            if args.batch_size or args.image_size:
                size = Size(args.batch_size or size.batch, tuple(args.image_size) if args.image_size else size.image)
                size_name += " (overridden)"
            run = SuiteRun(suite, methods, size, size_name, device=device, reps=reps, warmup=warmup,
                           threads=threads, cfg_options=list(args.cfg_options), data_root=args.data_root,
                           loader=not args.no_loader_line)
            result = run_suite(run)
    except USER_ERRORS as exc:
        fail(exc)
    if malloc_note:
        result["memory_measure"] += f"; {malloc_note}"
    result["malloc_mmap_threshold"] = args.mmap_threshold if malloc_note else None
    markdown = (report.pairwise_markdown if args.suite == PAIRWISE else report.suite_markdown)(result)
    json_path, md_path = report.write(result, args.out, markdown)
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return result


def _bar(unit: str):
    from tqdm import tqdm

    return lambda items: tqdm(items, desc=f"{PAIRWISE}: {unit}", unit=unit, file=sys.stderr)
