"""The pair-wise term's cost against its graph size: ``python tools/benchmark.py --suite pairwise-memory``.

PairWiseKD (every pixel a node, ``scale=None``) runs forward + backward on random ``B x C x H x W`` student and
teacher maps whose ``H x W`` grid has 1k, 2k, 4k, 8k, 16k, 32k nodes. The default channels are the pair-wise
tap of ``configs/cityscapes/pspnet_r18_pi_pa.py`` ('decoder': 128 channels in the PSPNet-R18 student, 512 in the
PSPNet-R101 teacher). Each count reports the median time of ``reps`` steps and the per-step peak memory
(:class:`~densekd.bench.measure.StepMemory`: what the step adds above the maps already allocated, the student
map's gradient included). A least-squares line through (nodes / 1000, MB) gives MB per 1k nodes, and the slope
of log MB against log nodes the growth exponent: about 1 or below means memory grows (at most) linearly, about 2
quadratically. The loss computes the N x N similarities in row chunks, so only the maps and a bounded block
should grow.

The similarities cost O(N^2 C) time: on a CPU the counts above ``--max-nodes`` (8192 there by default) are
skipped and the report says so.
"""
from __future__ import annotations

import functools
import math

from densekd.bench.measure import MB, StepMemory, run_block, summarize

DEFAULT_NODES = (1024, 2048, 4096, 8192, 16384, 32768)
CPU_MAX_NODES = 8192
LINEAR_EXPONENT = 1.15  # log-log slope up to which growth counts as linear


def grid(nodes: int) -> tuple[int, int]:
    """The most nearly square ``h x w`` grid with ``h * w == nodes`` (``h <= w``)."""
    if nodes < 1:
        raise ValueError(f"node counts must be >= 1; got {nodes}")
    h = math.isqrt(nodes)
    while nodes % h:
        h -= 1
    return h, nodes // h


def linear_fit(xs: list[float], ys: list[float]) -> dict | None:
    """Least-squares ``y = slope * x + intercept`` and its R^2 (None with fewer than two points)."""
    if len(xs) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys))
    return {"slope": slope, "intercept": intercept, "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0}


def _forward_backward(loss, s, t) -> None:
    loss(s, t).backward()
    s.grad = None


def run_pairwise(nodes=DEFAULT_NODES, device: str = "cpu", batch: int = 1, channels=(128, 512), reps: int = 3,
                 warmup: int = 1, max_nodes: int | None = None, progress=None, algorithm: str = "chunked") -> dict:
    """Time and measure PairWiseKD (``algorithm``: its N x N blocks, ``'chunked'``, or the channel Gram form,
    ``'gram'``) at each node count up to ``max_nodes`` (on a CPU 8192 by default for the chunked form, whose
    O(N^2 C) time grows fastest, and no limit for the Gram form); the result as a dict."""
    import torch

    from densekd.bench.runner import environment
    from densekd.engine import distributed as dist
    from densekd.losses.dense import PairWiseKD

    dev = dist.setup(device)
    cuda = dev.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(dev)) if cuda else (lambda: None)
    limit = max_nodes if max_nodes is not None else (None if cuda or algorithm == "gram" else CPU_MAX_NODES)
    counts = sorted(int(n) for n in nodes)
    run, skipped = [n for n in counts if limit is None or n <= limit], [n for n in counts if limit and n > limit]
    loss = PairWiseKD(scale=None, algorithm=algorithm)
    memory = StepMemory(dev)
    rows = []
    for n in (run if progress is None else progress(run)):
        h, w = grid(n)
        gen = torch.Generator().manual_seed(n)
        s = torch.randn(batch, channels[0], h, w, generator=gen).to(dev).requires_grad_(True)
        t = torch.randn(batch, channels[1], h, w, generator=gen).to(dev)
        step = functools.partial(_forward_backward, loss, s, t)
        stats = summarize(run_block(step, reps, warmup, sync))
        peak = memory.measure(step)
        rows.append({"nodes": n, "grid": [h, w], **stats, "peak_mb": None if peak is None else peak / MB})
        del s, t, step  # the next count's maps do not share memory with these
    result = {"suite": "pairwise-memory", "loss": f"PairWiseKD(scale=None, algorithm={algorithm!r}): every pixel a node",
              "algorithm": algorithm, "batch": batch,
              "channels": list(channels), "reps": reps, "warmup": warmup, "memory_measure": memory.kind,
              "environment": environment(dev, torch.get_num_threads()), "rows": rows, "max_nodes": limit,
              "skipped_nodes": skipped,
              "skipped": (f"Not run: {', '.join(map(str, skipped))} nodes (above --max-nodes {limit}; the O(N^2 C) "
                          f"similarities take too long here; pass --max-nodes to run them)") if skipped else None}
    measured = [r for r in rows if r["peak_mb"] is not None]
    fit = linear_fit([r["nodes"] / 1000 for r in measured], [r["peak_mb"] for r in measured])
    positive = [r for r in measured if r["peak_mb"] > 0]
    loglog = linear_fit([math.log(r["nodes"]) for r in positive], [math.log(r["peak_mb"]) for r in positive])
    if fit and loglog:
        exponent = loglog["slope"]
        linear = exponent <= LINEAR_EXPONENT
        result["fit"] = {"mb_per_1k_nodes": fit["slope"], "intercept_mb": fit["intercept"], "r2": fit["r2"],
                         "exponent": exponent, "linear": linear,
                         "verdict": f"grows {'at most linearly' if linear else 'faster than linearly'} with the "
                                    f"node count (log-log slope {exponent:.2f}; 1 = linear, 2 = quadratic)"}
    return result
