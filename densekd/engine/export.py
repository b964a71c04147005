"""Export a trained student to ONNX or TorchScript, with a parity check against PyTorch (``tools/export.py``).

What is exported: :class:`~densekd.engine.deploy.InferenceGraph` of the config's ``model`` with the checkpoint's
weights -- the student alone (no taps, no distillation parts, no auxiliary head unless ``aux=True``), in eval
mode, returning the task's output tensor(s): segmentation logits ``B x C x H x W`` at the input resolution,
classification logits ``B x C``, depth ``B x 1 x H x W`` in metres (multi-task: one output per task). The input
is named after the batch key the student reads (``student_input``: ``image``, ``depth``, ...). The batch axis is
dynamic; H x W are those of the example (``--input-size``, default the validation sample's size).

* ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter, the default since PyTorch
  2.9; it needs the ``onnx`` and ``onnxscript`` packages) with ``dynamic_shapes`` marking axis 0 of the input
  as ``batch``. The legacy TorchScript-based exporter is not used: it cannot export PSPNet's adaptive pooling
  to bins that do not divide the feature map. Parity runs the file in onnxruntime (CPU).
* ``torchscript``: ``torch.jit.trace`` at batch 2, saved with ``torch.jit.save``; parity runs the reloaded file.

Parity: the exported network and the PyTorch graph see the same inputs (standard normal, seed 1) at batch 1 and
3 -- other sizes than the traced 2, so a batch size baked into the graph fails -- and every output must satisfy
``max|exported - torch| <= atol + rtol * max|torch|`` (default ``atol=1e-4``, ``rtol=1e-4``). Everything runs
on the CPU.

A JSON sidecar ``<file>.json`` records what a user of the file needs: the input name and shape, the output
names and shapes, the normalisation (mean / std), class names, the task, and the parity results.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
EXPORT_BATCH = 2
CHECK_BATCHES = (1, 3)
INSTALL = "pip install 'densekd[export]'"


class MissingDependency(ImportError):
    """A package the export or its check needs is not installed (the message says what to install)."""


def require(*modules: str, what: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingDependency(f"{what} needs the package{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                                f"which {'are' if len(missing) > 1 else 'is'} not installed: {INSTALL}")


def default_output(checkpoint: str | Path, fmt: str) -> Path:
    """``<run dir>/export/<stem><suffix>`` for a checkpoint in a run's ``checkpoints/``, else the checkpoint's
    folder."""
    ckpt = Path(checkpoint)
    folder = ckpt.parent.parent / "export" if ckpt.parent.name == "checkpoints" else ckpt.parent
    return folder / (ckpt.stem + SUFFIX[fmt])


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


# -- exporters ------------------------------------------------------------------------------------------------
def export_onnx(graph, example: torch.Tensor, path: Path, input_name: str, output_names, opset: int | None = None
                ) -> str:
    """Write ``graph`` as ONNX with a dynamic batch axis; returns the exporter's log (captured)."""
    require("onnx", "onnxscript", what="ONNX export (torch.onnx.export, dynamo=True)")
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    log = io.StringIO()
    kwargs = dict(dynamo=True, input_names=[input_name], output_names=list(output_names),
                  dynamic_shapes={"x": {0: batch}}, verbose=False, external_data=False)
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    with contextlib.redirect_stdout(log), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, (example,), str(path), **kwargs)
    return log.getvalue()


def export_torchscript(graph, example: torch.Tensor, path: Path) -> str:
    """Trace ``graph`` at ``example``'s shape and save it; returns the tracer's warnings, one per line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
        torch.jit.save(traced, str(path))
    notes = sorted({str(w.message).splitlines()[0] for w in caught if "deprecated" not in str(w.message)})
    return "\n".join(notes)


# -- runners of the exported files ------------------------------------------------------------------------------
def onnx_runner(path: Path, input_name: str):
    """``f(x) -> tuple of numpy outputs`` running ``path`` in onnxruntime on the CPU."""
    require("onnxruntime", what="the ONNX parity check")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if names != [input_name]:
        raise ValueError(f"{path}: the ONNX graph's inputs are {names}, expected [{input_name!r}]")

    def run(x: torch.Tensor):
        return tuple(session.run(None, {input_name: x.numpy()}))

    return run


def torchscript_runner(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated (torch 2.14), not removed
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()

    def run(x: torch.Tensor):
        with torch.no_grad():
            return tuple(t.numpy() for t in _as_tuple(module(x)))

    return run


def parity(graph, run, example_shape, output_names, batches=CHECK_BATCHES, atol: float = 1e-4, rtol: float = 1e-4
           ) -> dict:
    """Compare ``run(x)`` (the exported network) with ``graph(x)`` on standard-normal inputs (seed 1) at each batch
    size; see the module docstring for the criterion. Returns ``{'passed', 'atol', 'rtol', 'checks': [...]}``."""
    gen = torch.Generator().manual_seed(1)
    checks, passed = [], True
    for b in batches:
        x = torch.randn((int(b),) + tuple(example_shape[1:]), generator=gen)
        with torch.no_grad():
            ref = [t.detach().numpy() for t in _as_tuple(graph(x))]
        got = run(x)
        if len(got) != len(ref):
            raise ValueError(f"the exported network returns {len(got)} outputs, PyTorch {len(ref)}")
        for name, r, g in zip(output_names, ref, got):
            g = np.asarray(g)
            if g.shape != r.shape:
                checks.append(dict(batch=int(b), output=name, shape=list(g.shape), expected_shape=list(r.shape),
                                   ok=False))
                passed = False
                continue
            diff = float(np.abs(g.astype(np.float64) - r.astype(np.float64)).max()) if r.size else 0.0
            scale = float(np.abs(r).max()) if r.size else 0.0
            ok = bool(np.isfinite(diff) and diff <= atol + rtol * scale)
            passed &= ok
            checks.append(dict(batch=int(b), output=name, shape=list(r.shape), max_abs_diff=diff, max_abs_ref=scale,
                               ok=ok))
    return dict(passed=passed, atol=atol, rtol=rtol, checks=checks)


# -- the whole export -----------------------------------------------------------------------------------------------
def export(graph, example: torch.Tensor, fmt: str, path: str | Path, input_name: str = "image", check: bool = True,
           atol: float = 1e-4, rtol: float = 1e-4, opset: int | None = None, meta: dict | None = None) -> dict:
    """Export ``graph`` (an :class:`~densekd.engine.deploy.InferenceGraph`) in ``fmt`` to ``path`` and check it.

    Returns the report that is also written to ``<path>.json``: ``format``, ``file``, ``input`` (name, shape with
    ``'batch'`` first, dtype), ``outputs`` (names and shapes at the example), ``params`` (of the exported
    network), ``parity`` (see :func:`parity`; ``{'skipped': reason}`` when ``check`` is False or onnxruntime is
    missing -- then ``parity['missing']`` names the package), and ``meta`` (normalisation, classes, ...).
    Raises :class:`MissingDependency` when the exporter's packages are missing."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = graph.cpu().eval()
    example = example.cpu()
    if example.shape[0] != EXPORT_BATCH:
        example = example[:1].expand((EXPORT_BATCH,) + tuple(example.shape[1:])).contiguous()
    names = tuple(graph.output_names)
    with torch.no_grad():
        outputs = _as_tuple(graph(example))
    if len(outputs) != len(names):
        raise ValueError(f"the network returns {len(outputs)} tensors but its task names {len(names)}: {names}")
    if fmt == "onnx":
        log = export_onnx(graph, example, path, input_name, names, opset)
    else:
        log = export_torchscript(graph, example, path)
    report = dict(format=fmt, file=str(path), bytes=path.stat().st_size,
                  input=dict(name=input_name, shape=["batch", *map(int, example.shape[1:])], dtype="float32"),
                  outputs=[dict(name=n, shape=["batch", *map(int, t.shape[1:])]) for n, t in zip(names, outputs)],
                  params=int(sum(p.numel() for p in graph.parameters())), torch=torch.__version__,
                  exporter=("torch.onnx.export(dynamo=True)" if fmt == "onnx" else "torch.jit.trace"),
                  meta=dict(meta or {}))
    if log.strip():
        report["exporter_log"] = log.strip().splitlines()[-20:]
    if not check:
        report["parity"] = dict(skipped="--no-check")
    else:
        try:
            run = onnx_runner(path, input_name) if fmt == "onnx" else torchscript_runner(path)
        except MissingDependency as exc:
            report["parity"] = dict(skipped=str(exc), missing="onnxruntime")
        else:
            report["parity"] = parity(graph, run, example.shape, names, atol=atol, rtol=rtol)
    Path(str(path) + ".json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_line(report: dict) -> str:
    """One line: what was written and how the parity check went."""
    p = report["parity"]
    if "skipped" in p:
        check = f"parity check skipped ({p['skipped']})"
    else:
        worst = max(c.get("max_abs_diff", float("inf")) for c in p["checks"])
        batches = sorted({c["batch"] for c in p["checks"]})
        check = (f"parity {'OK' if p['passed'] else 'FAILED'}: max |exported - torch| = {worst:.3g} at batch sizes "
                 f"{', '.join(map(str, batches))} (atol {p['atol']:g}, rtol {p['rtol']:g})")
    outs = ", ".join(f"{o['name']} {'x'.join(map(str, o['shape']))}" for o in report["outputs"])
    inp = report["input"]
    return (f"{report['format']}: {report['file']} ({report['params'] / 1e6:.3f} M parameters; "
            f"{inp['name']} {'x'.join(map(str, inp['shape']))} -> {outs}); {check}")
