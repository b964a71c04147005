"""Cost of a network: parameters, FLOPs / MACs, activation memory and measured latency (``tools/profile_model.py``,
the ``cost`` entry of ``summary.json``, the demos' tables).

How each number is obtained:

* **parameters** (``params``): the parameters of the modules that run in one eval-mode forward pass (forward hooks
  record which modules ran; each tensor counted once), so a head used only in training (PSPNet's auxiliary head)
  is not counted; ``params_total`` counts every parameter the module holds.
* **FLOPs** (``flops``): :class:`torch.utils.flop_counter.FlopCounterMode`, PyTorch's own counter, over one
  eval-mode forward pass at the given input (batch included). It counts 2 FLOPs per multiply-add of the matrix
  products and convolutions (``mm``, ``addmm``, ``bmm``, ``convolution``, attention...) and nothing for
  element-wise operations, normalisation, pooling or interpolation. ``macs = flops / 2``. The pass runs on the
  ``meta`` device (shapes only, no arithmetic: free at any input size), falling back to the real device when an
  operation has no meta kernel.
* **activation memory** (``activation_mb``): the bytes of the tensors autograd saves for the backward pass during
  one forward pass (``torch.autograd.graph.saved_tensors_hooks``; each storage counted once, parameters and
  buffers excluded, the input included) -- what a training step holds per batch for the backward.
  On CUDA also ``cuda_peak_forward_mb``: ``torch.cuda.max_memory_allocated`` during one inference forward pass
  minus the memory allocated before it (weights and input excluded).
* **latency** (``latency_ms``): ``warmup`` forward passes, then the median (and min / max) of ``runs`` timed
  passes under ``torch.inference_mode``, ``time.perf_counter`` around each, ``torch.cuda.synchronize`` before
  reading the clock on CUDA; CPU runs state ``torch.get_num_threads()``.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

METHODS = {
    "params": "parameters of the modules that run in an eval-mode forward pass (forward hooks), each tensor once",
    "flops": "torch.utils.flop_counter.FlopCounterMode over one eval-mode forward pass: 2 per multiply-add of "
             "matrix products and convolutions, element-wise ops / norms / pooling / interpolation not counted; "
             "MACs = FLOPs / 2",
    "activation_mb": "bytes of the tensors autograd saves for backward in one forward pass (saved_tensors_hooks; "
                     "each storage once, parameters and buffers excluded, input included)",
    "cuda_peak_forward_mb": "torch.cuda.max_memory_allocated during one inference forward minus the memory "
                            "allocated before it",
    "latency_ms": "median of `runs` timed forward passes after `warmup` untimed ones (torch.inference_mode, "
                  "perf_counter, cuda synchronize on CUDA)",
}


class _RanModules:
    """Forward hooks on every submodule recording which ones ran."""

    def __init__(self, module: nn.Module):
        self.ran: set[int] = set()
        self.handles = [m.register_forward_hook(self._hook) for m in module.modules()]

    def _hook(self, module, _inputs, _output):
        self.ran.add(id(module))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _flop_pass(module: nn.Module, example: torch.Tensor, device: str) -> tuple[int, dict, set[int]]:
    from torch.func import functional_call

    counter = FlopCounterMode(display=False)
    ran = _RanModules(module)
    try:
        if device == "meta":
            tensors = {k: torch.empty_like(v, device="meta") for k, v in
                       list(module.named_parameters(remove_duplicate=False)) +
                       list(module.named_buffers(remove_duplicate=False))}
            with counter, torch.no_grad():
                functional_call(module, tensors, (example.to("meta"),), tie_weights=False, strict=False)
        else:
            dev = next((p.device for p in module.parameters()), torch.device("cpu"))
            with counter, torch.no_grad():
                module(example.to(dev))
    finally:
        ran.remove()
    counts = counter.get_flop_counts().get("Global", {})
    return int(counter.get_total_flops()), {str(k): int(v) for k, v in counts.items()}, ran.ran


def inference_cost(module: nn.Module, example: torch.Tensor) -> dict:
    """``params`` (used in the forward), ``params_total``, ``flops``, ``macs`` and ``flops_by_op`` of one eval-mode
    forward pass of ``module`` on ``example`` (see the module docstring). The module's mode is restored."""
    was_training = module.training
    module.eval()
    try:
        try:
            flops, by_op, ran = _flop_pass(module, example, "meta")
            where = "meta"
        except Exception:  # an op without a meta kernel: count on the real device
            flops, by_op, ran = _flop_pass(module, example, "real")
            where = "real"
    finally:
        module.train(was_training)
    seen, used = set(), 0
    for m in module.modules():
        if id(m) not in ran:
            continue
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                used += p.numel()
    total = sum(p.numel() for p in module.parameters())
    return dict(params=int(used), params_total=int(total), flops=flops, macs=flops // 2, flops_by_op=by_op,
                input_shape=[int(s) for s in example.shape], flops_counted_on=where)


def saved_activation_bytes(module: nn.Module, example: torch.Tensor) -> int:
    """Bytes autograd saves for backward in one eval-mode forward pass with gradients enabled (see the module
    docstring). Parameters are made to require gradients for the pass (and restored)."""
    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    own = {t.untyped_storage().data_ptr() for t in list(module.parameters()) + list(module.buffers())}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in own and key not in seen:
            seen[key] = storage.nbytes()
        return t

    flags = [(p, p.requires_grad) for p in module.parameters()]
    was_training = module.training
    module.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = module(example.to(dev))
        del out
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        module.train(was_training)
    return int(sum(seen.values()))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(module: nn.Module, example: torch.Tensor, runs: int = 20, warmup: int = 3) -> dict:
    """Median / min / max milliseconds of ``runs`` forward passes after ``warmup`` (see the module docstring)."""
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0; got runs={runs}, warmup={warmup}")
    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    x = example.to(dev)
    module.eval()
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        _sync(dev)
        for _ in range(runs):
            start = time.perf_counter()
            module(x)
            _sync(dev)
            times.append((time.perf_counter() - start) * 1000.0)
    out = dict(median=round(statistics.median(times), 4), min=round(min(times), 4), max=round(max(times), 4),
               runs=int(runs), warmup=int(warmup), device=str(dev))
    if dev.type == "cpu":
        out["threads"] = torch.get_num_threads()
    else:
        out["gpu"] = torch.cuda.get_device_name(dev)
    return out


def cuda_peak_forward_mb(module: nn.Module, example: torch.Tensor) -> float | None:
    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    if dev.type != "cuda":
        return None
    x = example.to(dev)
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    with torch.inference_mode():
        module(x)
    torch.cuda.synchronize(dev)
    return round((torch.cuda.max_memory_allocated(dev) - before) / 2 ** 20, 3)


def profile(module: nn.Module, example: torch.Tensor, runs: int = 20, warmup: int = 3, latency: bool = True) -> dict:
    """Everything above for one network (on the device its parameters are on)."""
    out = inference_cost(module, example)
    out["params_M"] = round(out["params"] / 1e6, 4)
    out["gflops"] = round(out["flops"] / 1e9, 4)
    out["gmacs"] = round(out["macs"] / 1e9, 4)
    out["activation_mb"] = round(saved_activation_bytes(module, example) / 2 ** 20, 3)
    peak = cuda_peak_forward_mb(module, example)
    if peak is not None:
        out["cuda_peak_forward_mb"] = peak
    if latency:
        out["latency_ms"] = measure_latency(module, example, runs, warmup)
    return out


def ratio(a, b) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def compression(teacher: dict, student: dict) -> dict:
    """Teacher / student ratios of parameters, FLOPs, activation memory and median latency."""
    out = dict(params=ratio(teacher["params"], student["params"]), flops=ratio(teacher["flops"], student["flops"]),
               activation=ratio(teacher.get("activation_mb"), student.get("activation_mb")))
    if "latency_ms" in teacher and "latency_ms" in student:
        out["latency"] = ratio(teacher["latency_ms"]["median"], student["latency_ms"]["median"])
    return out


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def markdown(report: dict) -> str:
    """The report of ``tools/profile_model.py`` as Markdown: one row per network, then the compression ratios."""
    inp = report["inputs"]
    lines = [f"# Cost profile: {report['config']}", ""]
    lat = next((m["latency_ms"] for m in report["models"] if "latency_ms" in m), None)
    where = ""
    if lat:
        where = (f"; latency: median of {lat['runs']} runs after {lat['warmup']} warm-up on {lat['device']}"
                 + (f" with {lat['threads']} thread(s)" if "threads" in lat else f" ({lat.get('gpu', '')})"))
    lines += [f"Batch {report['batch']}{where}.", ""]
    lines += ["| network | model | input | params (M) | GFLOPs | GMACs | activations (MB) | latency (ms) |",
              "|---|---|---|---:|---:|---:|---:|---:|"]
    for m in report["models"]:
        shape = "x".join(map(str, m["input_shape"][1:]))
        lines.append(f"| {m['name']} | {m['model']} | {inp[m['name']]['key']} {shape} | {m['params_M']:.3f} | "
                     f"{m['gflops']:.3f} | {m['gmacs']:.3f} | {m['activation_mb']:.1f} | "
                     f"{_num(m.get('latency_ms', {}).get('median'), '.2f')} |")
    if report.get("compression"):
        lines += ["", "| teacher / student | params | FLOPs | activations | latency |", "|---|---:|---:|---:|---:|"]
        for name, c in report["compression"].items():
            lines.append(f"| {name} | {_num(c['params'], '.2f')}x | {_num(c['flops'], '.2f')}x | "
                         f"{_num(c['activation'], '.2f')}x | {_num(c.get('latency'), '.2f')}x |")
    lines += ["", "Methods:", ""] + [f"- {k}: {v}" for k, v in report["methods"].items()]
    return "\n".join(lines) + "\n"
