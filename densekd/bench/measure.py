"""Timing and memory primitives of the benchmark suite.

Timing (:func:`run_rounds`): every candidate (a named zero-argument step) first runs ``warmup`` untimed steps, in
rounds; then ``reps`` timed rounds, and in each round every candidate runs ONE timed step in turn, always in the
same order. A slow drift of the machine (another job starting, thermal throttling) then lands on all
candidates alike instead of on whichever was timed last. On CUDA each step is bracketed by synchronisations.
:func:`summarize` reduces a candidate's per-step seconds to the median, quartiles and extremes in ms.

Memory (:class:`StepMemory`): the peak memory ONE step adds above what was in use just before it -- not the
process's lifetime peak, which the largest model built in the process would dominate:

* CUDA: ``torch.cuda.reset_peak_memory_stats()``, the step, ``max_memory_allocated()`` minus the
  ``memory_allocated()`` before the step (tensors the caching allocator hands out; its cached free blocks are
  not counted).
* CPU (Linux): the kernel's resident-set high-water mark is reset by writing ``5`` to ``/proc/self/clear_refs``
  (it restarts from the current RSS), the step runs, and ``VmHWM`` minus the ``VmRSS`` read before the step is
  its peak growth. ``gc.collect()`` and glibc's ``malloc_trim(0)`` run first, so free heap the allocator kept from
  earlier steps is returned and the step's own allocations show as growth. Pages that stay resident from
  before (a CRD memory bank, the models) count zero, as they should. Where ``clear_refs`` is not writable (not
  Linux, some containers) the reading is unavailable (None), never a lifetime peak in disguise.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

MB = 2**20


@dataclass
class Candidate:
    """One thing to time: ``fn()`` runs one step; ``samples`` collects the seconds of its timed steps."""

    name: str
    fn: Callable[[], object]
    samples: list[float] = field(default_factory=list)


def run_rounds(candidates: Sequence[Candidate], reps: int, warmup: int, sync: Callable[[], None] = lambda: None,
               clock: Callable[[], float] = time.perf_counter,
               progress: Callable[[Iterable], Iterable] | None = None) -> dict[str, list[float]]:
    """Interleaved timing (see the module docstring): ``warmup`` untimed rounds, then ``reps`` rounds of one
    timed step per candidate, in order. ``clock`` and ``sync`` are injectable (tests, CUDA); ``progress`` wraps
    the timed rounds (a tqdm bar). Returns (and appends to each candidate's ``samples``) the seconds per step."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be >= 1 and warmup >= 0; got reps={reps}, warmup={warmup}")
    for _ in range(warmup):
        for cand in candidates:
            cand.fn()
    sync()
    rounds = range(reps) if progress is None else progress(range(reps))
    for _ in rounds:
        for cand in candidates:
            sync()
            start = clock()
            cand.fn()
            sync()
            cand.samples.append(clock() - start)
    return {cand.name: list(cand.samples) for cand in candidates}


def run_block(fn: Callable[[], object], reps: int, warmup: int, sync: Callable[[], None] = lambda: None,
              clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """``warmup`` untimed then ``reps`` timed consecutive calls of ``fn`` (seconds each): for steps that cannot
    be interleaved with others, such as one fed by a loader whose workers run ahead."""
    return run_rounds([Candidate("block", fn)], reps, warmup, sync, clock)["block"]


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, quartiles (inclusive method), IQR, min and max of per-step seconds, in milliseconds."""
    if not seconds:
        raise ValueError("no timed steps to summarise")
    ms = sorted(1000.0 * s for s in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0],) * 3
    return {"median_ms": statistics.median(ms), "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "min_ms": ms[0], "max_ms": ms[-1], "n": len(ms)}


def _status_bytes(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{key} not in /proc/self/status")


def _reset_rss_peak() -> bool:
    """Reset the process's resident-set high-water mark (VmHWM) to its current RSS; False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> None:
    """Return glibc's free heap to the kernel (no-op without glibc)."""
    try:
        _libc().malloc_trim(0)
    except AttributeError:
        pass


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold(nbytes: int) -> bool:
    """glibc: serve every allocation of ``nbytes`` or more by its own mmap, released on free, and stop the
    threshold from adapting (by default it rises to the size of the largest block freed, up to 32 MiB, after
    which such blocks come from the heap, where small allocations made in between fragment it: a step that
    frees and re-allocates 16 MiB blocks while keeping small tensors can grow the RSS by many blocks). With it,
    a CPU reading shows what a step allocates rather than how glibc's heap fragments. False without glibc."""
    try:
        return bool(_libc().mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    except AttributeError:
        return False


class StepMemory:
    """The peak memory one step adds (bytes), on ``device`` (see the module docstring for the two measures).

    ``kind`` names the measure (it goes into every report); ``available`` is False on a CPU where the RSS
    high-water mark cannot be reset, and :meth:`measure` then returns None."""

    CPU_KIND = ("per-step peak RSS growth: VmHWM after the step (reset through /proc/self/clear_refs just before "
                "it) minus VmRSS before it, after gc.collect() and malloc_trim(0)")
    CUDA_KIND = ("per-step peak CUDA allocation: torch.cuda.max_memory_allocated() after reset_peak_memory_stats() "
                 "minus memory_allocated() before the step")

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            self.available, self.kind = True, self.CUDA_KIND
        else:
            self.available = _reset_rss_peak()
            self.kind = self.CPU_KIND if self.available else \
                "unavailable: /proc/self/clear_refs is not writable here, so the RSS high-water mark cannot be reset"

    def measure(self, fn: Callable[[], object]) -> int | None:
        """Run ``fn()`` once and return its peak growth in bytes (None when unavailable)."""
        if not self.available:
            fn()
            return None
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            fn()
            torch.cuda.synchronize(self.device)
            return max(0, torch.cuda.max_memory_allocated(self.device) - before)
        _malloc_trim()
        before = _status_bytes("VmRSS")
        if not _reset_rss_peak():
            fn()
            return None
        fn()
        return max(0, _status_bytes("VmHWM") - before)
