import importlib.util
import subprocess
import sys

import pytest

from densekd.config import load_config
from densekd.engine.trainer import Trainer
from tests.conftest import ROOT


def test_list_taps_prints_paths_shapes_and_groups_for_student_and_teacher():
    out = subprocess.run([sys.executable, str(ROOT / "tools/list_taps.py"),
                          str(ROOT / "configs/cifar100/distill/resnet56-resnet20/at.py"), "--synthetic"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    student, teacher = text.split("== teacher 0")
    assert "== student: CifarResNet (input 1x3x32x32)" in student
    assert any(l.split()[:3] == ["layer3", "Sequential", "1x64x8x8"] for l in student.splitlines())
    assert "layer3.2.act" in student and "layer3.8.act" in teacher  # resnet20 has 3 blocks a stage, resnet56 9
    assert "[4] fc:input" in student and "1x64" in student.split("[4] fc:input")[1].splitlines()[0]
    assert "preacts[i]:" in teacher and "layer1.-1.act:input" in teacher


def test_list_taps_reports_config_errors():
    out = subprocess.run([sys.executable, str(ROOT / "tools/list_taps.py"),
                          str(ROOT / "configs/cifar100/students/resnet20.py"), "--cfg-options", "model.type=resnet21"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "resnet20" in out.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard (extra 'tb') not installed")
def test_tensorboard_scalars_written(tiny_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(load_config(tiny_config(epochs=1)), tmp_path / "wd", device="cpu", synthetic=True).train()
    acc = EventAccumulator(str(tmp_path / "wd" / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "train/loss" in tags and "val/top1" in tags


def test_benchmark_reports_throughput_and_memory(tiny_config, tmp_path):
    import json

    out = subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), str(tiny_config()), "--synthetic",
                          "--iters", "3", "--warmup", "1", "--device", "cpu", "--out", str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["seconds_per_iter"] > 0 and result["images_per_second"] == pytest.approx(
        8 / result["seconds_per_iter"], rel=0.01) and result["peak_memory_mb"] > 0
