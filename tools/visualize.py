#!/usr/bin/env python
"""Draw predictions: one PNG per validation image, image | ground truth | teacher | student, drawn by the task
(segmentation: the dataset's palette, e.g. Cityscapes' official colours; ignore pixels black). Only tasks that
draw pictures are supported; a config of another task (classification) is a one-line error naming those that do.

    python tools/visualize.py CONFIG CHECKPOINT [--teacher-checkpoint PATH] [--synthetic] [--data-root PATH]
                              [--num N] [--out DIR] [--cfg-options k=v ...] [--device cpu|cuda]

CHECKPOINT holds the student (the config's ``model``): a densekd checkpoint (best.pth / last.pth) or a plain
state dict. The teacher column appears when the config has a teacher and its checkpoint can be loaded
(``teacher.checkpoint`` or ``--teacher-checkpoint``); otherwise it is left out with a note. Predictions use the
config's inference (``task.mode`` whole / slide, scales, flip). Default ``--out``: ``vis/`` next to the
checkpoint's ``checkpoints/`` folder (the run's work dir). Also writes ``legend.png`` (the task's colour key).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densekd.engine.launch import USER_ERRORS, add_config_args, default_work_dir, fail, prepare  # noqa: E402


def _out_dir(args, cfg) -> Path:
    if args.out:
        return Path(args.out)
    ckpt = Path(args.checkpoint)
    if ckpt.parent.name == "checkpoints":
        return ckpt.parent.parent / "vis"
    return default_work_dir(cfg, None) / "vis"


def _sample_name(dataset, index: int) -> str:
    images = getattr(dataset, "images", None)
    if images is not None:
        return Path(images[index]).name.replace("_leftImg8bit.png", "")
    return f"sample{index:04d}"


def drawing_tasks() -> list[str]:
    """The registered tasks that draw pictures (they define ``draw_target`` and ``draw_prediction``)."""
    from densekd.registry import TASKS
    from densekd.tasks.base import Task

    names = []
    for name in TASKS.names():
        cls = TASKS.get(name)
        if isinstance(cls, type) and issubclass(cls, Task) and cls.draw_target is not Task.draw_target \
                and cls.draw_prediction is not Task.draw_prediction:
            names.append(name)
    return names


def check_task_draws(cfg) -> None:
    """A config whose task draws no pictures (classification) is a one-line error naming those that do."""
    from densekd.registry import TASKS

    task_type = (cfg.get("task") or {}).get("type", "classification")
    drawing = drawing_tasks()
    if isinstance(task_type, str) and task_type not in drawing and task_type in TASKS:
        raise ValueError(f"tools/visualize.py draws pictures for {', '.join(drawing)} configs only; this config's "
                         f"task is {task_type!r}, which draws none (evaluate it with tools/test.py instead)")


def visualize(cfg, checkpoint: str, out_dir: Path, num: int = 4, teacher_checkpoint: str | None = None,
              device: str = "auto") -> list[Path]:
    """Write ``num`` figures (and ``legend.png``) to ``out_dir``; returns the figure paths."""

    from densekd.engine import distributed as dist
    from densekd.engine.builder import build_dataset, build_model, build_task, teacher_configs
    from densekd.engine.checkpoint import load_weights
    from densekd.engine.visualize import draw_predictions

    if num < 1:
        raise ValueError(f"--num must be >= 1; got {num}")
    dev = dist.setup(device)
    check_task_draws(cfg)
    val = build_dataset(cfg, "val")
    if val is None:
        raise ValueError("the config has no data.val dataset to draw")
    # the dataset's class names / palette are the task's defaults (names in the legend, colours in pictures)
    task = build_task(cfg, val)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"student checkpoint not found: {checkpoint}")
    student = build_model(cfg["model"])
    load_weights(student, checkpoint, what="student")
    models = {}
    input_keys = {"student": cfg.get("student_input", "image")}

    tcfgs = teacher_configs(cfg)
    if teacher_checkpoint is not None and not tcfgs:
        raise ValueError("--teacher-checkpoint was given but the config defines no `teacher` (its model is "
                         "needed to load the weights); use a distillation config")
    if tcfgs:
        path = teacher_checkpoint or tcfgs[0].get("checkpoint")
        if teacher_checkpoint is not None and not Path(teacher_checkpoint).is_file():
            raise FileNotFoundError(f"--teacher-checkpoint not found: {teacher_checkpoint}")
        if path and Path(path).is_file():
            teacher = build_model(tcfgs[0]["model"], where="teacher model")
            load_weights(teacher, path, what="teacher")
            models["teacher"] = teacher
            input_keys["teacher"] = tcfgs[0].get("input", "image")
        else:
            print(f"note: teacher column left out: checkpoint {path!r} not found (pass --teacher-checkpoint PATH)")
    models["student"] = student
    for m in models.values():
        m.to(dev).eval()

    norm = {k: cfg["data"]["val"][k] for k in ("mean", "std") if cfg["data"]["val"].get(k) is not None}
    return draw_predictions(task, val, models, out_dir, num, name=lambda i: f"{i:03d}_{_sample_name(val, i)}",
                            input_keys=input_keys, **norm)


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(parser)
    parser.add_argument("checkpoint", help="student weights: a densekd checkpoint or a plain state dict")
    parser.add_argument("--teacher-checkpoint", default=None, help="teacher weights (default: teacher.checkpoint)")
    parser.add_argument("--num", type=int, default=4, help="number of validation images to draw (default 4)")
    parser.add_argument("--out", default=None, help="output folder (default: WORK_DIR/vis)")
    args = parser.parse_args(argv)
    try:
        cfg = prepare(args)
        paths = visualize(cfg, args.checkpoint, _out_dir(args, cfg), num=args.num,
                          teacher_checkpoint=args.teacher_checkpoint, device=args.device)
    except USER_ERRORS as exc:
        fail(exc)
    except OSError as exc:
        fail(exc)
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
