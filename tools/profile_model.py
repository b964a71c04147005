#!/usr/bin/env python
"""Cost profile of a config's student (and teachers): parameters, FLOPs / MACs, activation memory, latency.

    python tools/profile_model.py CONFIG [--teacher] [--input-size H W] [--threads N] [--batch 1] [--runs 20]
                                  [--warmup 3] [--device auto|cpu|cuda] [--no-latency] [--out PREFIX]
                                  [--synthetic] [--data-root PATH] [--cfg-options k=v ...]

Each network is profiled as it is deployed (the student alone in eval mode, returning the task's output; no
auxiliary head) at the size the task evaluates: the validation sample's (``data.val``, e.g. the full frame or the
val crop; ``--synthetic`` reads the stand-in's) or --input-size. Weights do not change the cost, so no checkpoint
is read. With --teacher every teacher of the config is profiled too, with the teacher / student ratios of
parameters, FLOPs, activation memory and latency. Writes PREFIX.json and PREFIX.md (default
``work_dirs/<config name>/profile``) and prints the Markdown. The methods are stated in both files (see
densekd/engine/profile.py).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, default_work_dir, fail, prepare  # noqa: E402


def _network(model_cfg: dict, task, where: str):
    """(inference graph of a freshly built model, its model config without local weight files)."""
    from densekd.engine.builder import build_model
    from densekd.engine.deploy import InferenceGraph

    model_cfg = copy.deepcopy(dict(model_cfg))
    model_cfg.pop("pretrained", None)  # the cost does not depend on the weights
    return InferenceGraph(build_model(model_cfg, where=where), task), model_cfg


def profile_config(cfg, teacher: bool = False, input_size=None, batch: int = 1, runs: int = 20, warmup: int = 3,
                   device: str = "auto", latency: bool = True) -> dict:
    import torch

    from densekd.engine import deploy, profile
    from densekd.engine.builder import teacher_configs
    from densekd.tasks.base import Task

    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    task = deploy.build_config_task(cfg)
    nets = [("student", cfg["model"], str(cfg.get("student_input", "image")), "model")]
    if teacher:
        tcfgs = teacher_configs(cfg)
        if not tcfgs:
            raise ValueError("--teacher: the config has no teacher (a distillation config names one)")
        for i, t in enumerate(tcfgs):
            nets.append(("teacher" if len(tcfgs) == 1 else f"teacher{i}", t["model"], t.get("input", "image"),
                         f"teacher {i} model"))
    models, inputs = [], {}
    for name, mcfg, key, where in nets:
        graph, mcfg = _network(mcfg, task, where)
        example, source = deploy.example_input(cfg, graph.model, key, input_size, batch=batch)
        try:
            with torch.no_grad():
                graph(example)
        except ValueError:  # e.g. a single-task teacher of a multi-task student: its main output
            graph = deploy.InferenceGraph(graph.model, Task())
        graph.to(dev)
        result = profile.profile(graph, example, runs=runs, warmup=warmup, latency=latency)
        result = dict(name=name, model=deploy.describe_model(mcfg), **result)
        models.append(result)
        inputs[name] = dict(key=key, shape=list(example.shape), source=source)
        graph.cpu()
    report = dict(config=str(cfg.filename), batch=int(batch), inputs=inputs, models=models,
                  device=str(dev), threads=torch.get_num_threads(), torch=torch.__version__,
                  methods=dict(profile.METHODS))
    if len(models) > 1:
        report["compression"] = {m["name"]: profile.compression(m, models[0]) for m in models[1:]}
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("--teacher", action="store_true", help="profile the teachers too, with compression ratios")
    parser.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"), default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=20, help="timed forward passes (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-latency", action="store_true", help="skip the timing (counts only)")
    parser.add_argument("--out", default=None, help="output prefix (default: work_dirs/<config name>/profile)")
    args = parser.parse_args(argv)
    import torch

    from densekd.engine.profile import markdown

    if args.threads is not None:
        if args.threads < 1:
            fail(ValueError(f"--threads must be >= 1; got {args.threads}"))
        torch.set_num_threads(args.threads)
    try:
        if args.batch < 1:
            raise ValueError(f"--batch must be >= 1; got {args.batch}")
        cfg = prepare(args)
        report = profile_config(cfg, teacher=args.teacher, input_size=args.input_size, batch=args.batch,
                                runs=args.runs, warmup=args.warmup, device=args.device, latency=not args.no_latency)
    except USER_ERRORS as exc:
        fail(exc)
    text = markdown(report)
    prefix = Path(args.out) if args.out else default_work_dir(cfg, None) / "profile"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    Path(str(prefix) + ".json").write_text(json.dumps(report, indent=2) + "\n")
    Path(str(prefix) + ".md").write_text(text)
    print(text)
    print(f"Written: {prefix}.json, {prefix}.md")
    return report


if __name__ == "__main__":
    main()
