#!/usr/bin/env python
"""The densekd demo: structured knowledge distillation for semantic segmentation, end to end on a CPU.

    python tools/demo.py [--work-dir work_dirs/demo] [--quick] [--device cpu] [--threads N] [--seed 0]

On the synthetic Cityscapes stand-in (procedural 64 x 128 street scenes, the 19 Cityscapes classes, ignore
255; the training scenes carry annotation noise, see configs/cityscapes/demo/_base_/synthetic.py) it trains,
with the ordinary Trainer and the demo configs in configs/cityscapes/demo/:

  1. a teacher           configs/cityscapes/demo/teacher.py           (PSPNet-R18, 2 stages, output stride 4)
  2. a student baseline  configs/cityscapes/demo/student_baseline.py  (PSPNet-R18, 2 stages, output stride 8)
  3. the same student    configs/cityscapes/demo/student_skd.py       (+ pixel-wise and pair-wise
                                                                        distillation from 1.)

then evaluates the three on the validation scenes, prints a table of mIoU / pixel accuracy, and writes
``results.json``, ``results.md`` and example pictures (image | ground truth | teacher | baseline | distilled)
to the work dir. Baseline and distilled student share network, data order, schedule and seed.
``--quick`` runs a few iterations on a handful of scenes (a smoke test of the pipeline, numbers meaningless).
Each stage is the same as ``python tools/train.py CONFIG --work-dir WORK_DIR/STAGE`` (printed as it starts).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Idle OpenMP threads sleep instead of spinning: on a small, shared CPU spinning threads that wait for a
# descheduled sibling slow every convolution down many times over. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEMO_CONFIGS = ROOT / "configs" / "cityscapes" / "demo"
STAGES = (
    # name, config, table label
    ("teacher", "teacher.py", "Teacher (PSPNet-R18, 2 stages, OS 4, 128-ch head)"),
    ("baseline", "student_baseline.py", "Student baseline (PSPNet-R18, 2 stages, OS 8, 64-ch head)"),
    ("skd", "student_skd.py", "Student + structured KD (pixel-wise + pair-wise)"),
)
QUICK = ["train.iters=3", "train.eval_interval=3", "train.checkpoint_interval=3", "train.log_interval=1",
         "data.train.num_samples=8", "data.val.num_samples=4", "data.batch_size=4", "data.val_batch_size=4"]


def _threads(requested: int | None) -> int:
    if requested:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_stage(name: str, config: Path, cfg, work_dir: Path, overrides: list[str], device: str) -> dict:
    """Train one stage; its summary plus ``wall_s`` and the student's parameter count ``params_M``."""
    from densekd.engine.trainer import Trainer

    shown = " ".join(shlex.quote(o) for o in overrides)
    print(f"\n=== {name}: python tools/train.py {_rel(config)} --work-dir {_rel(work_dir)} --overwrite"
          + (f" --cfg-options {shown}" if overrides else "") + "\n", flush=True)
    start = time.time()
    trainer = Trainer(cfg, work_dir, device=device, synthetic=True, overwrite=True)  # the demo retrains its own runs
    summary = trainer.train()
    summary["wall_s"] = round(time.time() - start, 1)
    summary["params_M"] = round(sum(p.numel() for p in trainer.strategy.primary_model.parameters()) / 1e6, 3)
    return summary


def pictures(work_dir: Path, cfgs: dict, num: int, device: str) -> list[Path]:
    """image | ground truth | teacher | baseline | distilled, for the first ``num`` validation scenes."""

    import torch

    from densekd.engine.builder import build_datasets, build_model, build_task
    from densekd.engine.checkpoint import load_weights
    from densekd.engine.visualize import draw_predictions

    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    _, val = build_datasets(cfgs["baseline"])
    # the dataset's class names / palette (Cityscapes') are the task's defaults: legend names, picture colours
    task = build_task(cfgs["baseline"], val)
    models = {}
    for name, title in (("teacher", "teacher"), ("baseline", "baseline"), ("skd", "distilled")):
        m = build_model(cfgs[name]["model"])
        load_weights(m, work_dir / name / "checkpoints" / "best.pth", what=name)
        models[title] = m.to(dev).eval()
    return draw_predictions(task, val, models, work_dir / "pictures", num, name=lambda i: f"val_{i:03d}")


def results_table(rows: list[dict]) -> str:
    lines = ["| model | mIoU (%) | pixel acc (%) | mean class acc (%) | params (M) | train time (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['mIoU']:.2f} | {r['pixel_acc']:.2f} | {r['mean_acc']:.2f} | "
                     f"{r['params_M']:.2f} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="work_dirs/demo", help="default: work_dirs/demo")
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations on a handful of scenes: checks the pipeline in seconds")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="default cpu (the numbers in the README were measured there)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the available cores, at most 8)")
    parser.add_argument("--seed", type=int, default=None, help="seed of all three runs (default: configs' 0)")
    parser.add_argument("--pictures", type=int, default=4, help="validation scenes to draw (default 4)")
    args = parser.parse_args(argv)

    import torch

    threads = _threads(args.threads)
    torch.set_num_threads(threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()

    configs = {name: DEMO_CONFIGS / fname for name, fname, _ in STAGES}
    base = list(QUICK) if args.quick else []
    if args.seed is not None:
        base.append(f"seed={args.seed}")
    overrides = {name: list(base) for name in configs}
    overrides["skd"].append(f"teacher.checkpoint={str(work_dir / 'teacher' / 'checkpoints' / 'best.pth')!r}")

    from densekd.config import load_config

    cfgs = {name: load_config(configs[name], overrides[name]) for name in configs}
    rows, summaries = [], {}
    for name, _fname, label in STAGES:
        summary = run_stage(name, configs[name], cfgs[name], work_dir / name, overrides[name], args.device)
        summaries[name] = summary
        final = summary["final"]
        rows.append(dict(stage=name, label=label, config=_rel(configs[name]), mIoU=final["mIoU"],
                         pixel_acc=final["pixel_acc"], mean_acc=final["mean_acc"], params_M=summary["params_M"],
                         wall_s=summary["wall_s"], iters=summary["iters"]))

    pics = pictures(work_dir, cfgs, args.pictures, args.device)
    table = results_table(rows)
    gain = rows[2]["mIoU"] - rows[1]["mIoU"]
    total = time.time() - start
    verdict = (f"Structured KD changes the student's mIoU by {gain:+.2f} points "
               f"({rows[1]['mIoU']:.2f} -> {rows[2]['mIoU']:.2f}); teacher {rows[0]['mIoU']:.2f}.")
    data = cfgs["baseline"]["data"]
    results = {
        "rows": rows, "kd_gain_mIoU": round(gain, 3), "quick": args.quick, "device": args.device,
        "threads": threads, "seed": summaries["baseline"]["seed"], "total_s": round(total, 1),
        "pictures": [_rel(p) for p in pics],
        "note": (f"synthetic Cityscapes stand-in (SyntheticCityscapes; training labels with annotation noise "
                 f"label_noise={data['train'].get('label_noise', 0.0)}); metrics on its "
                 f"{data['val'].get('num_samples')} validation scenes (exact labels)")
                if not args.quick else "--quick: a few iterations, numbers are not meaningful",
    }
    (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = ["# densekd demo: structured KD on synthetic Cityscapes", "",
          f"{'Quick smoke run (--quick): numbers not meaningful. ' if args.quick else ''}"
          f"Device {args.device}, {threads} thread(s), seed {results['seed']}, total {total:.0f} s.", "",
          table, "", verdict, "", "Pictures (image | ground truth | teacher | baseline | distilled):", ""]
    md += [f"![{p.name}](pictures/{p.name})" for p in pics]
    (work_dir / "results.md").write_text("\n".join(md) + "\n")

    print("\n" + table + "\n")
    print(verdict)
    print(f"Total {total:.0f} s. Results: {_rel(work_dir / 'results.md')}, {_rel(work_dir / 'results.json')}; "
          f"pictures in {_rel(work_dir / 'pictures')}/")
    return results


if __name__ == "__main__":
    main()
