#!/usr/bin/env python
"""Print every module path of the student and teacher(s) of a config with its output shape.

    python tools/list_taps.py CONFIG [--cfg-options ...] [--synthetic] [--data-root PATH] [--input-size C H W]

Use the paths (or the model's ``feats[...]`` / ``preacts[...]`` groups, also printed) as
``student=`` / ``teacher=`` taps of distillation terms. Add ``:input`` to tap a module's input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, fail, prepare  # noqa: E402


def describe_model(title: str, model, image) -> list[str]:
    """Every called module with its output shape, then the model's tap groups (``feats[i]``...)."""
    import torch

    from densekd.distill.taps import FeatureTaps, describe, expand_taps, trace_shapes

    model.eval()
    rows = trace_shapes(model, image)
    width = max(len(r[0]) for r in rows)
    lines = [f"== {title}: {type(model).__name__} (input {describe(image)})"]
    lines += [f"  {path:<{width}}  {kind:<22} {shape}" for path, kind, shape in rows]
    for group in getattr(model, "feature_taps", None) or {}:
        paths = expand_taps(model, f"{group}[:]")
        with FeatureTaps(model, paths) as taps, torch.no_grad():
            shapes = [describe(t) for t in taps.collect(paths, model(image))]
        lines.append(f"  {group}[i]:")
        lines += [f"    [{i}] {p:<{width}} {s}" for i, (p, s) in enumerate(zip(paths, shapes))]
    return lines


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"), default=None,
                        help="probe input size (default: one training sample of the config's dataset)")
    args = parser.parse_args(argv)
    import torch

    from densekd.tasks.base import batch_input
    from densekd.engine.builder import build_datasets, build_model, probe_batch, teacher_configs

    try:
        cfg = prepare(args)
        probe = None if args.input_size else probe_batch(build_datasets(cfg)[0], n=1)

        def probe_input(key: str):
            return torch.randn(1, *args.input_size) if probe is None else batch_input(probe, key, "the probe")

        lines = describe_model("student", build_model(cfg["model"]), probe_input(cfg.get("student_input", "image")))
        for i, t in enumerate(teacher_configs(cfg)):
            lines += [""] + describe_model(f"teacher {i}", build_model(t["model"], where=f"teacher {i}"),
                                           probe_input(t.get("input", "image")))
    except USER_ERRORS as exc:
        fail(exc)
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    main()
