#!/usr/bin/env python
"""The densekd demos: distillation end to end on a CPU, on synthetic stand-ins of the real datasets.

    python tools/demo.py [segmentation|depth|crossmodal|stl10] [--work-dir DIR] [--quick] [--device cpu]
                         [--threads N]

Each demo trains, with the ordinary Trainer and the demo configs, a teacher, a student baseline and the same
student distilled from that teacher, evaluates the three on the validation set, prints a table and writes
``results.json``, ``results.md``, example pictures (image | ground truth | teacher | baseline |
distilled) and ``curves.png`` (training losses per term, the validation metric and the learning rate of every
stage; needs matplotlib) to the work dir. Baseline and distilled student share network, data order, schedule and seed.

* ``segmentation`` (the default; work dir ``work_dirs/demo``): structured KD on synthetic Cityscapes
  (procedural 64 x 128 street scenes, 19 classes, ignore 255; the training scenes carry annotation noise,
  see configs/cityscapes/demo/_base_/synthetic.py): PSPNet-R18 teacher at output stride 4, the student at
  output stride 8, + pixel-wise and pair-wise distillation.
* ``depth`` (work dir ``work_dirs/demo_depth``): depth distillation on synthetic NYU-Depth v2 rooms
  (configs/nyu/demo/): a depth teacher, a smaller student, + pixel-wise depth KD (DepthKD).
* ``crossmodal`` (work dir ``work_dirs/demo_crossmodal``): CRD's cross-modal transfer on the synthetic rooms
  (configs/nyu/demo/xm_*.py): an RGB teacher, a depth student taught by CRD without labels, and NYU-40
  segmentation from depth with a head on frozen features -- on a random encoder vs on the CRD one.
* ``stl10`` (work dir ``work_dirs/demo_stl10``): the STL-10 luminance -> chrominance transfer on the synthetic
  stand-in (configs/stl10/demo/): an L teacher trained on the labelled pictures, an ab student taught by CRD on
  unlabelled pictures, and the ab student random-init vs CRD-distilled under the linear probe (pooled features,
  labelled train split -> test top-1) and after fine-tuning with a new head.

``--quick`` runs a few iterations on a handful of samples (a smoke test of the pipeline, numbers
meaningless). Each stage is the same as ``python tools/train.py CONFIG --work-dir WORK_DIR/STAGE`` (printed
as it starts).
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

QUICK = ["train.iters=3", "train.eval_interval=3", "train.checkpoint_interval=3", "train.log_interval=1",
         "data.train.num_samples=8", "data.val.num_samples=4", "data.batch_size=4", "data.val_batch_size=4"]
DEMOS = {
    "segmentation": dict(
        configs=ROOT / "configs" / "cityscapes" / "demo", work_dir="work_dirs/demo",
        title="structured KD on synthetic Cityscapes", method="Structured KD",
        stages=(("teacher", "teacher.py", "Teacher (PSPNet-R18, 2 stages, OS 4, 128-ch head)"),
                ("baseline", "student_baseline.py", "Student baseline (PSPNet-R18, 2 stages, OS 8, 64-ch head)"),
                ("skd", "student_skd.py", "Student + structured KD (pixel-wise + pair-wise)")),
        # metric, column title, format
        columns=(("mIoU", "mIoU (%)", ".2f"), ("pixel_acc", "pixel acc (%)", ".2f"),
                 ("mean_acc", "mean class acc (%)", ".2f")),
        note="synthetic Cityscapes stand-in (SyntheticCityscapes; training labels with annotation noise "
             "label_noise={label_noise}); metrics on its {num_val} validation scenes (exact labels)"),
    "depth": dict(
        configs=ROOT / "configs" / "nyu" / "demo", work_dir="work_dirs/demo_depth",
        title="depth distillation on synthetic NYU-Depth v2 rooms", method="Depth KD",
        stages=(("teacher", "teacher.py", "Teacher (FPN-R18, 4 stages, 128-ch decoder, complete depth)"),
                ("baseline", "student_baseline.py", "Student baseline (FPN-R18, 2 stages, 32-ch decoder)"),
                ("kd", "student_kd.py", "Student + DepthKD (pixel-wise L1 to the teacher's depth)")),
        columns=(("abs_rel", "abs rel ↓", ".4f"), ("rmse", "rmse (m) ↓", ".4f"), ("delta1", "δ1 ↑", ".4f")),
        note="synthetic NYU-Depth v2 rooms (SyntheticNYUDepthV2); NYU metrics (Eigen crop scaled to the frame, "
             "depth valid in (1e-3, 10] m) on its {num_val} test rooms"),
}


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
    # the network as it runs at inference (summary.json's cost: FlopCounterMode on one validation sample)
    cost = summary.get("cost") or {}
    params = cost.get("params", sum(p.numel() for p in trainer.strategy.primary_model.parameters()))
    summary["params_M"] = round(params / 1e6, 3)
    summary["gflops"] = round(cost["flops"] / 1e9, 4) if "flops" in cost else float("nan")
    return summary


def pictures(work_dir: Path, cfgs: dict, stages, num: int, device: str) -> list[Path]:
    """image | ground truth | teacher | baseline | distilled, for the first ``num`` validation samples."""

    import torch

    from densekd.engine.builder import build_datasets, build_model, build_task
    from densekd.engine.checkpoint import load_weights
    from densekd.engine.visualize import draw_predictions

    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    _, val = build_datasets(cfgs["baseline"])
    # the dataset's metadata (class names, palette) are the task's defaults: legend names, picture colours
    task = build_task(cfgs["baseline"], val)
    models = {}
    for (name, _f, _l), title in zip(stages, ("teacher", "baseline", "distilled")):
        m = build_model(cfgs[name]["model"])
        load_weights(m, work_dir / name / "checkpoints" / "best.pth", what=name)
        models[title] = m.to(dev).eval()
    return draw_predictions(task, val, models, work_dir / "pictures", num, name=lambda i: f"val_{i:03d}")


def results_table(rows: list[dict], columns) -> str:
    lines = ["| model | " + " | ".join(title for _, title, _ in columns) + " | params (M) | GFLOPs | train time (s) |",
             "|---|" + "---:|" * (len(columns) + 3)]
    for r in rows:
        cells = " | ".join(format(r[key], fmt) for key, _, fmt in columns)
        lines.append(f"| {r['label']} | {cells} | {r['params_M']:.2f} | {r.get('gflops', float('nan')):.3f} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


def curves(work_dir: Path, stages, keys) -> Path | None:
    """``curves.png`` (and ``curves.json``) of the stages' metrics.jsonl: ``keys`` that some stage logged, one
    subplot each, one line per stage; None (with a note) without matplotlib."""
    from densekd.engine.curves import load_runs, write_curves

    runs = load_runs([work_dir / name for name in stages], labels=list(stages))
    try:
        write_curves(runs, work_dir / "curves.png", keys, strict=False, title="training curves")
    except ImportError as exc:
        print(f"note: no curves.png ({exc})")
        return None
    return work_dir / "curves.png"


XM_STAGES = (  # name, config, label
    ("teacher", "xm_teacher.py", "RGB teacher (ResNet-18, dominant-class view)"),
    ("crd", "xm_crd.py", "Depth student pre-trained by CRD from the RGB teacher (no labels)"),
    ("probe_random", "xm_probe.py", "Depth segmentation, head on frozen RANDOM features"),
    ("probe_crd", "xm_probe.py", "Depth segmentation, head on frozen CRD features"),
)
XM_QUICK = ["data.batch_size=4", "data.val_batch_size=4", "train.log_interval=1"]


def crossmodal(args, threads: int, work_dir: Path) -> dict:
    """The cross-modal demo (see the module docstring): four trainings, the probe table, pictures."""
    from densekd.config import load_config

    start = time.time()
    configs = {name: ROOT / "configs" / "nyu" / "demo" / fname for name, fname, _ in XM_STAGES}
    base = list(XM_QUICK) if args.quick else []
    if args.seed is not None:
        base.append(f"seed={args.seed}")
    ckpt = lambda stage, name: repr(str(work_dir / stage / "checkpoints" / name))  # noqa: E731
    extra = {"teacher": [], "crd": [f"teacher.checkpoint={ckpt('teacher', 'best.pth')}"], "probe_random": [],
             "probe_crd": [f"model.pretrained={ckpt('crd', 'last.pth')}"]}
    rows, summaries = [], {}
    for name, _f, label in XM_STAGES:
        overrides = base + extra[name]
        cfg = load_config(configs[name], overrides)
        if args.quick:
            for split in ("train", "val"):
                ds = cfg["data"].get(split)
                if ds:
                    (ds.get("dataset") or ds)["num_samples"] = 8 if split == "train" else 4
            cfg["train"]["iters"] = 2
        summaries[name] = run_stage(name, configs[name], cfg, work_dir / name, overrides, args.device)
        rows.append(dict(stage=name, label=label, config=_rel(configs[name]), iters=summaries[name]["iters"],
                         wall_s=summaries[name]["wall_s"], params_M=summaries[name]["params_M"],
                         gflops=summaries[name]["gflops"], **summaries[name]["final"]))
    curve_png = curves(work_dir, [name for name, _f, _l in XM_STAGES], ["loss", "loss/*", "top1", "mIoU", "lr"])
    probes = [r for r in rows if r["stage"].startswith("probe")]
    columns = (("mIoU", "mIoU (%)", ".2f"), ("pixel_acc", "pixel acc (%)", ".2f"), ("mean_acc", "mean class acc (%)", ".2f"))
    table = results_table(probes, columns)
    gain = probes[1]["mIoU"] - probes[0]["mIoU"]
    teacher_top1 = rows[0].get("top1", float("nan"))
    verdict = (f"CRD pre-training from the RGB teacher changes the frozen-feature probe's mIoU by {gain:+.2f} "
               f"({probes[0]['mIoU']:.2f} -> {probes[1]['mIoU']:.2f}); the RGB teacher's dominant-class top-1 is "
               f"{teacher_top1:.2f}%.")
    total = time.time() - start
    results = {"demo": "crossmodal", "rows": rows, "crd_gain_mIoU": round(gain, 3), "quick": args.quick,
               "device": args.device, "threads": threads, "seed": summaries["probe_random"]["seed"],
               "total_s": round(total, 1), "curves": _rel(curve_png) if curve_png else None,
               "note": "synthetic NYU-Depth v2 rooms; segmentation from depth alone on its 50 test rooms"
                       if not args.quick else "--quick: a few iterations, numbers are not meaningful"}
    (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = ["# densekd demo: cross-modal transfer RGB -> depth (CRD) on synthetic NYU rooms", "",
          f"{'Quick smoke run (--quick): numbers not meaningful. ' if args.quick else ''}"
          f"Device {args.device}, {threads} thread(s), seed {results['seed']}, total {total:.0f} s.", "",
          table, "", verdict]
    if curve_png:
        md += ["", "![training curves](curves.png)"]
    (work_dir / "results.md").write_text("\n".join(md) + "\n")
    print("\n" + table + "\n")
    print(verdict)
    print(f"Total {total:.0f} s. Results: {_rel(work_dir / 'results.md')}, {_rel(work_dir / 'results.json')}")
    return results


STL_STAGES = (  # name, config, label
    ("teacher", "teacher.py", "L teacher (WRN-16-1, supervised on the labelled pictures)"),
    ("crd", "ab_crd.py", "ab student pre-trained by CRD from the L teacher (no labels)"),
    ("random", "ab_random_init.py", "ab student at its random initialisation (no training)"),
)
STL_ROWS = (("random", "ab student, random init"), ("crd", "ab student, CRD from the L teacher"))


def _set_num_samples(cfg, sizes: dict) -> None:
    """--quick: every SyntheticSTL10 dataset of ``cfg`` (wrappers included) shrunk to ``sizes`` per file part."""
    def visit(node):
        if isinstance(node, dict):
            if node.get("type") == "SyntheticSTL10":
                node["num_samples"] = {k: sizes[k] for k in node.get("num_samples") or sizes}
            for v in node.values():
                visit(v)
    visit(cfg)


def stl10(args, threads: int, work_dir: Path) -> dict:
    """The STL-10 L -> ab demo (see the module docstring): three trainings, two probes, two fine-tunings."""
    from densekd.config import load_config
    from densekd.probe import run_probe

    start = time.time()
    configs = ROOT / "configs" / "stl10" / "demo"
    base = list(XM_QUICK) if args.quick else []
    if args.seed is not None:
        base.append(f"seed={args.seed}")
    last = lambda stage: repr(str(work_dir / stage / "checkpoints" / "last.pth"))  # noqa: E731
    extra = {"teacher": [], "random": [],
             "crd": [f"teacher.checkpoint={str(work_dir / 'teacher' / 'checkpoints' / 'best.pth')!r}"]}
    quick_sizes = {"train": 10, "test": 6, "unlabeled": 6}

    def config(fname, overrides):
        cfg = load_config(configs / fname, overrides)
        if args.quick:
            _set_num_samples(cfg, quick_sizes)
            if cfg["train"].get("iters"):
                cfg["train"]["iters"] = 2
        return cfg

    summaries, stage_rows = {}, []
    for name, fname, label in STL_STAGES:
        overrides = base + extra[name]
        summaries[name] = run_stage(name, configs / fname, config(fname, overrides), work_dir / name, overrides,
                                    args.device)
        stage_rows.append(dict(stage=name, label=label, config=_rel(configs / fname), iters=summaries[name]["iters"],
                               wall_s=summaries[name]["wall_s"], params_M=summaries[name]["params_M"],
                               **summaries[name]["final"]))
    rows = []
    for name, label in STL_ROWS:
        ckpt = work_dir / name / "checkpoints" / "last.pth"
        print(f"\n=== probe_{name}: python tools/linear_probe.py {_rel(configs / 'ab_probe.py')} {_rel(ckpt)} "
              f"--work-dir {_rel(work_dir / f'probe_{name}')}\n", flush=True)
        t = time.time()
        probe = run_probe(config("ab_probe.py", base), str(ckpt), work_dir / f"probe_{name}", device=args.device,
                          max_steps=2 if args.quick else None)
        probe_s = time.time() - t
        overrides = base + [f"load_from.path={last(name)}"]
        fine = run_stage(f"finetune_{name}", configs / "ab_finetune.py", config("ab_finetune.py", overrides),
                         work_dir / f"finetune_{name}", overrides, args.device)
        rows.append(dict(stage=name, label=label, probe_top1=probe["final"]["linear_probe_top1"],
                         probe_top5=probe["final"]["linear_probe_top5"], probe_wd=probe["wd"],
                         finetune_top1=fine["final"]["top1"], probe_s=round(probe_s, 1), finetune_s=fine["wall_s"],
                         pretrain_s=summaries[name]["wall_s"], pretrain_iters=summaries[name]["iters"]))
    lines = ["| ab network | linear probe top-1 (%) | linear probe top-5 (%) | fine-tuned top-1 (%) | "
             "pre-training (s) | probe (s) | fine-tuning (s) |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['label']} | {r['probe_top1']:.2f} | {r['probe_top5']:.2f} | {r['finetune_top1']:.2f} | "
              f"{r['pretrain_s']:.0f} | {r['probe_s']:.0f} | {r['finetune_s']:.0f} |" for r in rows]
    table = "\n".join(lines)
    rand, crd = rows
    gain, fgain = crd["probe_top1"] - rand["probe_top1"], crd["finetune_top1"] - rand["finetune_top1"]
    teacher_top1 = summaries["teacher"]["final"].get("top1", float("nan"))
    verdict = (f"CRD from the L teacher changes the ab network's linear-probe top-1 by {gain:+.2f} "
               f"({rand['probe_top1']:.2f} -> {crd['probe_top1']:.2f}) and its fine-tuned top-1 by {fgain:+.2f} "
               f"({rand['finetune_top1']:.2f} -> {crd['finetune_top1']:.2f}); the L teacher's own top-1 is "
               f"{teacher_top1:.2f}%.")
    total = time.time() - start
    cpu = time.process_time()
    results = {"demo": "stl10", "rows": rows, "stages": stage_rows, "crd_gain_probe_top1": round(gain, 3),
               "crd_gain_finetune_top1": round(fgain, 3), "teacher_top1": teacher_top1, "quick": args.quick,
               "device": args.device, "threads": threads, "seed": summaries["crd"]["seed"], "total_s": round(total, 1),
               "cpu_s": round(cpu, 1),
               "note": "synthetic STL-10 stand-in (SyntheticSTL10, colour_cue=0: objects in random hues), 32 x 32; "
                       "probe trained on 500 labelled pictures, scored on 500 test pictures"
                       if not args.quick else "--quick: a few iterations, numbers are not meaningful"}
    (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = ["# densekd demo: STL-10 luminance -> chrominance transfer (CRD) on the synthetic stand-in", "",
          f"{'Quick smoke run (--quick): numbers not meaningful. ' if args.quick else ''}"
          f"Device {args.device}, {threads} thread(s), seed {results['seed']}, total {total:.0f} s "
          f"(process CPU time {cpu:.0f} s).", "", table, "", verdict]
    (work_dir / "results.md").write_text("\n".join(md) + "\n")
    print("\n" + table + "\n")
    print(verdict)
    print(f"Total {total:.0f} s. Results: {_rel(work_dir / 'results.md')}, {_rel(work_dir / 'results.json')}")
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", nargs="?", default="segmentation", choices=sorted(DEMOS) + ["crossmodal", "stl10"],
                        help="which demo (default: segmentation)")
    parser.add_argument("--work-dir", default=None, help="default: work_dirs/demo (segmentation), "
                                                         "work_dirs/demo_<name> (others)")
    parser.add_argument("--quick", action="store_true",
                        help="a few iterations on a handful of samples: checks the pipeline in seconds")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="default cpu (the numbers in the README were measured there)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: the available cores, at most 8)")
    parser.add_argument("--seed", type=int, default=None, help="seed of all three runs (default: configs' 0)")
    parser.add_argument("--pictures", type=int, default=4, help="validation samples to draw (default 4)")
    args = parser.parse_args(argv)

    import torch

    threads = _threads(args.threads)
    torch.set_num_threads(threads)
    if args.demo == "crossmodal":
        work_dir = Path(args.work_dir or "work_dirs/demo_crossmodal")
        work_dir.mkdir(parents=True, exist_ok=True)
        return crossmodal(args, threads, work_dir)
    if args.demo == "stl10":
        work_dir = Path(args.work_dir or "work_dirs/demo_stl10")
        work_dir.mkdir(parents=True, exist_ok=True)
        return stl10(args, threads, work_dir)
    demo = DEMOS[args.demo]
    work_dir = Path(args.work_dir or demo["work_dir"])
    work_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()

    stages = demo["stages"]
    teacher, baseline, distilled = (name for name, _, _ in stages)
    configs = {name: demo["configs"] / fname for name, fname, _ in stages}
    base = list(QUICK) if args.quick else []
    if args.seed is not None:
        base.append(f"seed={args.seed}")
    overrides = {name: list(base) for name in configs}
    overrides[distilled].append(f"teacher.checkpoint={str(work_dir / teacher / 'checkpoints' / 'best.pth')!r}")

    from densekd.config import load_config

    cfgs = {name: load_config(configs[name], overrides[name]) for name in configs}
    columns = demo["columns"]
    rows, summaries = [], {}
    for name, _fname, label in stages:
        summary = run_stage(name, configs[name], cfgs[name], work_dir / name, overrides[name], args.device)
        summaries[name] = summary
        final = summary["final"]
        rows.append(dict(stage=name, label=label, config=_rel(configs[name]), params_M=summary["params_M"],
                         gflops=summary["gflops"], wall_s=summary["wall_s"], iters=summary["iters"],
                         **{key: final[key] for key, _, _ in columns}))

    pics = pictures(work_dir, cfgs, stages, args.pictures, args.device)
    curve_png = curves(work_dir, [name for name, _f, _l in stages], ["loss", "loss/*", columns[0][0], "lr"])
    table = results_table(rows, columns)
    primary = columns[0][0]
    fmt = columns[0][2]
    gain = rows[2][primary] - rows[1][primary]
    total = time.time() - start
    verdict = (f"{demo['method']} changes the student's {primary} by {format(gain, '+' + fmt)} "
               f"({format(rows[1][primary], fmt)} -> {format(rows[2][primary], fmt)}); teacher "
               f"{format(rows[0][primary], fmt)}.")
    data = cfgs[baseline]["data"]
    results = {
        "demo": args.demo, "rows": rows, f"kd_gain_{primary}": round(gain, 4), "quick": args.quick,
        "device": args.device, "threads": threads, "seed": summaries[baseline]["seed"], "total_s": round(total, 1),
        "pictures": [_rel(p) for p in pics], "curves": _rel(curve_png) if curve_png else None,
        "note": demo["note"].format(label_noise=data["train"].get("label_noise", 0.0),
                                    num_val=data["val"].get("num_samples"))
                if not args.quick else "--quick: a few iterations, numbers are not meaningful",
    }
    (work_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    md = [f"# densekd demo: {demo['title']}", "",
          f"{'Quick smoke run (--quick): numbers not meaningful. ' if args.quick else ''}"
          f"Device {args.device}, {threads} thread(s), seed {results['seed']}, total {total:.0f} s.", "",
          table, "", verdict, "", "Pictures (image | ground truth | teacher | baseline | distilled):", ""]
    md += [f"![{p.name}](pictures/{p.name})" for p in pics]
    if curve_png:
        md += ["", "Training curves (loss and its terms, validation metric, learning rate):", "",
               "![training curves](curves.png)"]
    (work_dir / "results.md").write_text("\n".join(md) + "\n")

    print("\n" + table + "\n")
    print(verdict)
    print(f"Total {total:.0f} s. Results: {_rel(work_dir / 'results.md')}, {_rel(work_dir / 'results.json')}; "
          f"pictures in {_rel(work_dir / 'pictures')}/")
    return results


if __name__ == "__main__":
    main()
