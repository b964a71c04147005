#!/usr/bin/env python
"""Export a trained student to ONNX or TorchScript and check that it computes what PyTorch computes.

    python tools/export.py CONFIG CHECKPOINT --format onnx|torchscript [--input-size H W] [--out PATH] [--aux]
                           [--no-check] [--atol 1e-4] [--rtol 1e-4] [--opset N] [--synthetic] [--data-root PATH]
                           [--cfg-options k=v ...]

The student alone (CONFIG's ``model`` with CHECKPOINT's weights; no taps, no distillation parts, no auxiliary head
unless --aux), returning the task's main output: segmentation logits at the input resolution, classification
logits, the depth map (metres). The batch axis is dynamic; H x W are --input-size or the validation sample's
size. Default --out: ``<run dir>/export/<checkpoint stem>.onnx`` (``.torchscript.pt``); a JSON sidecar
``<out>.json`` holds input / output names and shapes, normalisation, class names and the parity results.

Exit status: 0 when the export and its parity check pass (or --no-check), 1 when the parity check fails or cannot
run (onnxruntime missing: said in one line; the file is still written), 2 for a usage error or a missing exporter
package. ONNX needs ``pip install 'densekd[export]'`` (onnx, onnxscript, onnxruntime).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_cfg_options, add_data_root, fail, prepare  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="path to a config .py file")
    parser.add_argument("checkpoint", help="a densekd checkpoint (best.pth / last.pth) or a plain state dict")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"])
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="input height and width (default: the validation sample's)")
    parser.add_argument("--out", default=None, help="output file (default: RUN_DIR/export/<stem>.onnx)")
    parser.add_argument("--aux", action="store_true", help="keep the auxiliary head as a second output")
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    add_cfg_options(parser, "override settings of CONFIG (k=v, Python literals)")
    parser.add_argument("--synthetic", action="store_true", help="read the input size from the synthetic stand-in")
    add_data_root(parser, " (to read the input size)")
    args = parser.parse_args(argv)

    from densekd.engine import deploy
    from densekd.engine.export import MissingDependency, default_output, export, summary_line

    try:
        cfg = prepare(args)
        task = deploy.build_config_task(cfg)
        graph = deploy.inference_graph(cfg, args.checkpoint, aux=args.aux, task=task)
        key = str(cfg.get("student_input", "image"))
        example, source = deploy.example_input(cfg, graph.model, key, args.input_size)
        meta = dict(config=str(args.config), checkpoint=str(args.checkpoint), model=deploy.describe_model(cfg["model"]),
                    task=(cfg.get("task") or {}).get("type", "classification"), input_size_from=source,
                    normalisation=deploy.normalisation(cfg))
        if getattr(task, "class_names", None):
            meta["class_names"] = list(task.class_names)
        notes = inference_notes(task)
        if notes:
            meta["not_in_graph"] = notes
        out = Path(args.out) if args.out else default_output(args.checkpoint, args.format)
        report = export(graph, example, args.format, out, input_name=key, check=not args.no_check, atol=args.atol,
                        rtol=args.rtol, opset=args.opset, meta=meta)
    except MissingDependency as exc:
        fail(exc)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    print(summary_line(report))
    for note in meta.get("not_in_graph", []):
        print(f"note: {note}")
    parity = report["parity"]
    if parity.get("missing"):
        print(f"error: {parity['skipped']} -- the parity check was skipped (the file is written; --no-check "
              f"accepts it unchecked)", file=sys.stderr)
        raise SystemExit(1)
    if not parity.get("passed", True):
        bad = [c for c in parity["checks"] if not c["ok"]]
        print(f"error: the exported network differs from PyTorch: {bad[0]}", file=sys.stderr)
        raise SystemExit(1)
    return report


def inference_notes(task) -> list[str]:
    """What the config's inference does beyond the exported single pass (the caller's to do)."""
    notes = []
    if getattr(task, "mode", "whole") == "slide":
        notes.append(f"the task infers with sliding windows (crop {task.crop_size}); the graph is one whole-image pass")
    if tuple(getattr(task, "scales", (1.0,))) != (1.0,):
        notes.append(f"the task averages scales {task.scales}; the graph runs one scale")
    if getattr(task, "flip", False):
        notes.append("the task averages a horizontal flip; the graph runs no flip")
    return notes


if __name__ == "__main__":
    main()
