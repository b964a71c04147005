import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from densekd.config import load_config
from densekd.engine.optim import LRSchedule, build_optimizer
from densekd.engine.trainer import NonFiniteLossError, Trainer
from densekd.registry import LOSSES
from tests.conftest import ROOT

TRAIN = [sys.executable, str(ROOT / "tools" / "train.py")]


def run(cfg_path, work_dir, overrides=(), **kw):
    cfg = load_config(cfg_path, list(overrides))
    return Trainer(cfg, work_dir, device="cpu", synthetic=True, **kw).train()


def weights(work_dir, name="last.pth"):
    return torch.load(work_dir / "checkpoints" / name, weights_only=False)["model"]


def test_writes_design_artifacts(tiny_config, tmp_path):
    wd = tmp_path / "wd"
    summary = run(tiny_config(epochs=1), wd)
    for f in ("config.py", "train.log", "metrics.jsonl", "summary.json", "checkpoints/last.pth", "checkpoints/best.pth"):
        assert (wd / f).is_file(), f
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "split" not in x]
    assert {"iter", "epoch", "lr", "loss", "loss/cls"} <= set(train_lines[0])
    val = [x for x in lines if x.get("split") == "val"]
    assert val and {"top1", "top5"} <= set(val[-1])
    on_disk = json.loads((wd / "summary.json").read_text())
    assert on_disk["final"]["top1"] == summary["final"]["top1"] and "best" in on_disk
    assert load_config(wd / "config.py")["model"]["width"] == 8  # the resolved config loads back


def test_resume_continues_exactly(tiny_config, tmp_path):
    cfg = tiny_config(epochs=3)  # 6 iterations per epoch; lr drops at epoch 2
    full = run(cfg, tmp_path / "full")
    part = tmp_path / "part"
    run(cfg, part, max_iters=8)  # stops mid-epoch 2
    resumed = run(cfg, part, resume=True)
    assert resumed["final"] == full["final"] and resumed["iters"] == full["iters"] == 18
    for k, v in weights(tmp_path / "full").items():
        assert torch.equal(v, weights(part)[k]), k


def test_same_seed_same_metrics_and_different_seed_differs(tiny_config, tmp_path):
    cfg = tiny_config(epochs=1)
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    c = run(cfg, tmp_path / "c", ["seed=1"])
    assert a["final"] == b["final"]
    assert any(not torch.equal(v, weights(tmp_path / "c")[k]) for k, v in weights(tmp_path / "a").items())
    assert c["seed"] == 1


@LOSSES.register("_NaNAfter")
class NaNAfter(nn.Module):
    """Test-only term: finite for ``n`` calls, then NaN."""

    def __init__(self, n=2):
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, student, teacher, **extra):
        self.calls += 1
        return student.sum() * 0 + (float("nan") if self.calls > self.n else 0.0)


NAN_EXTRA = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n"
             "distill = [dict(type='_NaNAfter', n=2, weight=1.0)]\n")


def test_nonfinite_loss_stops_naming_term_and_iteration(tiny_config, tmp_path):
    with pytest.raises(NonFiniteLossError) as err:
        run(tiny_config(extra=NAN_EXTRA), tmp_path / "nan")
    assert "_NaNAfter=nan" in str(err.value) and "iteration 3" in str(err.value)
    summary = run(tiny_config(extra=NAN_EXTRA), tmp_path / "skip", ["train.skip_nonfinite=True"])
    assert summary["completed"] and math.isfinite(summary["final"]["top1"])
    assert "Skipping this step" in (tmp_path / "skip" / "train.log").read_text()


def test_gradient_accumulation_matches_full_batch(tiny_config, tmp_path):
    full = run(tiny_config(norm="gn", batch=8, epochs=1), tmp_path / "full")
    acc = run(tiny_config(norm="gn", batch=4, epochs=1), tmp_path / "acc",
              ["train.accumulate=2", "lr_schedule.type=constant"])
    assert full["final"] and acc["iters"] == 12
    ref = run(tiny_config(norm="gn", batch=8, epochs=1), tmp_path / "ref", ["lr_schedule.type=constant"])
    # micro-batches of 4 summed over 2 steps == one batch of 8 (same samples, per-sample norm)
    for k, v in weights(tmp_path / "ref").items():
        assert torch.allclose(v, weights(tmp_path / "acc")[k], atol=1e-5), k


def test_lr_schedules():
    s = LRSchedule(100, 10, type="multistep", milestones=[3, 6], gamma=0.1, by_epoch=True)
    assert [s.factor(i) for i in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])
    p = LRSchedule(100, 10, type="poly", power=0.9, by_epoch=False)
    assert p.factor(50) == pytest.approx(0.5 ** 0.9)
    c = LRSchedule(100, 10, type="cosine", by_epoch=False, min_lr_ratio=0.1)
    assert c.factor(100) == pytest.approx(0.1) and c.factor(50) == pytest.approx(0.55)
    w = LRSchedule(100, 10, type="constant", warmup_iters=10, warmup_ratio=0.1)
    assert w.factor(0) == pytest.approx(0.1) and w.factor(5) == pytest.approx(0.55) and w.factor(10) == 1


def test_no_decay_groups():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    opt = build_optimizer(dict(type="AdamW", lr=1e-3, weight_decay=0.05, no_decay_norm_bias=True), [m])
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert decayed == {id(m[0].weight), id(m[2].weight)}
    with pytest.raises(ValueError, match="Did you mean 'SGD'"):
        build_optimizer(dict(type="SDG", lr=1), [m])


def test_cli_test_tool_matches_training_summary(tiny_config, tmp_path):
    cfg = tiny_config(epochs=1)
    wd = tmp_path / "wd"
    out = subprocess.run(TRAIN + [str(cfg), "--work-dir", str(wd), "--synthetic", "--max-iters", "3",
                                  "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 3 and not summary["completed"]
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), str(cfg), str(wd / "checkpoints/last.pth"),
                          "--synthetic", "--out", str(tmp_path / "m.json"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "m.json").read_text())["top1"] == pytest.approx(summary["final"]["top1"])


def test_cli_reports_config_errors_without_traceback(tiny_config, tmp_path):
    out = subprocess.run(TRAIN + [str(tiny_config()), "--cfg-options", "train.epochz=1", "--work-dir",
                                  str(tmp_path / "w")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "train.epochz" in out.stderr and "Traceback" not in out.stderr


def test_sigterm_saves_checkpoint_then_resume_finishes(tiny_config, tmp_path):
    cfg = tiny_config(n_train=400, epochs=2)
    wd = tmp_path / "wd"
    proc = subprocess.Popen(TRAIN + [str(cfg), "--work-dir", str(wd), "--device", "cpu",
                                     "--cfg-options", "train.log_interval=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = wd / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    ckpt = torch.load(wd / "checkpoints" / "last.pth", weights_only=False)
    assert 0 < ckpt["iter"] < 100 and "Continue with --resume" in out
    res = subprocess.run(TRAIN + [str(cfg), "--work-dir", str(wd), "--device", "cpu", "--resume"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert json.loads((wd / "summary.json").read_text())["completed"]


def test_calibrate_batchnorm_sets_exact_batch_statistics():
    from densekd.engine.builder import calibrate_batchnorm

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    batches = [{"image": torch.randn(5, 3, 4, 4) * 3 + 1} for _ in range(3)]
    calibrate_batchnorm(m, batches)
    with torch.no_grad():
        feats = [m[0](b["image"]) for b in batches]
    means = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    assert torch.allclose(m[1].running_mean, means, atol=1e-5)
    assert not m.training and m[1].momentum == 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA paths (AMP, channels_last) need a GPU")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_and_channels_last(tiny_config, tmp_path, amp):
    cfg = load_config(tiny_config(epochs=1), [f"train.amp={amp}", "train.channels_last=True"])
    trainer = Trainer(cfg, tmp_path / amp, device="cuda", synthetic=True)
    assert trainer.amp == amp and trainer.channels_last
    assert trainer.strategy.student.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    summary = trainer.train()
    assert summary["completed"] and math.isfinite(summary["final"]["top1"])
    ckpt = torch.load(tmp_path / amp / "checkpoints/last.pth", weights_only=False)
    assert bool(ckpt["scaler"]) == (amp == "fp16")  # the GradScaler state travels with fp16 runs


def test_amp_on_cpu_falls_back_to_fp32_with_a_warning(tiny_config, tmp_path):
    cfg = load_config(tiny_config(epochs=1), ["train.amp=bf16"])
    trainer = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True)
    assert trainer.amp is None
    assert "applies on CUDA only" in (tmp_path / "w" / "train.log").read_text()
