"""Cost profile: FLOPs against a hand count, parameters that run, saved activations, tools/profile_model.py."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from densekd.engine.profile import compression, inference_cost, measure_latency, profile, saved_activation_bytes
from tests.conftest import ROOT


class Small(nn.Module):
    """3 -> 8 3x3 conv (padding 1) on 16 x 16, ReLU, global average pool, 8 -> 10 linear; plus a head that never
    runs in the forward pass."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)
        self.unused = nn.Linear(100, 100)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_flops_and_parameters_match_a_hand_count():
    # conv: every one of the 8 x 16 x 16 outputs is 3 x 3 x 3 = 27 multiply-adds (2 FLOPs each; bias not counted)
    conv_flops = 2 * (8 * 16 * 16) * (3 * 3 * 3)  # 110,592
    fc_flops = 2 * 8 * 10  # 160
    for batch in (1, 2):
        cost = inference_cost(Small(), torch.randn(batch, 3, 16, 16))
        assert cost["flops"] == batch * (conv_flops + fc_flops) == batch * 110_752
        assert cost["macs"] == cost["flops"] // 2
        assert cost["flops_counted_on"] == "meta"
        assert cost["params"] == (3 * 8 * 9 + 8) + (8 * 10 + 10) == 314  # the unused head is not counted
        assert cost["params_total"] == 314 + 100 * 100 + 100
        assert cost["flops_by_op"] == {"aten.convolution": batch * conv_flops, "aten.addmm": batch * fc_flops}


def test_flops_of_a_seg_model_equal_a_real_pass_and_need_no_arithmetic():
    from densekd.engine.builder import build_model
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(dict(type="seg_model", arch="PSPNet", encoder="resnet18", num_classes=19, encoder_depth=2,
                             psp_out_channels=16, aux_head=True)).train()
    x = torch.randn(1, 3, 64, 128)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    model.train()
    cost = inference_cost(model, x)  # on the meta device, in eval mode: no aux head
    assert cost["flops"] == counter.get_total_flops() and model.training
    assert cost["params"] == sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head."))


def test_saved_activations_match_a_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    net[3].requires_grad_(False)
    # conv saves its input (1 x 3 x 16 x 16 float32), ReLU its output (1 x 8 x 16 x 16), which Flatten and the
    # linear layer's saved input only view; weights are parameters, not activations
    assert saved_activation_bytes(net, torch.randn(1, 3, 16, 16)) == 4 * (3 * 16 * 16 + 8 * 16 * 16) == 11_264
    assert not net[3].weight.requires_grad and net[0].weight.requires_grad  # flags restored


def test_latency_and_compression_ratios():
    lat = measure_latency(Small(), torch.randn(1, 3, 16, 16), runs=5, warmup=1)
    assert lat["runs"] == 5 and lat["min"] <= lat["median"] <= lat["max"] and lat["threads"] == torch.get_num_threads()
    a, b = profile(Small(), torch.randn(1, 3, 16, 16), runs=2, warmup=0), profile(Small(), torch.randn(1, 3, 16, 16),
                                                                                  latency=False)
    assert "latency_ms" not in b and a["activation_mb"] > 0
    ratio = compression(dict(a, params=628, flops=4 * a["flops"]), a)
    assert ratio["params"] == 2.0 and ratio["flops"] == 4.0 and ratio["latency"] == 1.0
    with pytest.raises(ValueError, match="runs"):
        measure_latency(Small(), torch.randn(1, 3, 16, 16), runs=0)


def test_profile_tool_reports_student_teacher_and_compression(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "profile_model.py"),
                          str(ROOT / "configs" / "cityscapes" / "demo" / "student_skd.py"), "--teacher", "--threads", "1",
                          "--runs", "2", "--warmup", "1", "--out", str(tmp_path / "prof")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "prof.json").read_text())
    student, teacher = report["models"]
    assert [student["name"], teacher["name"]] == ["student", "teacher"]
    assert student["input_shape"] == [1, 3, 64, 128] and report["inputs"]["student"]["source"].startswith("data.val")
    assert student["latency_ms"]["threads"] == 1 and student["latency_ms"]["runs"] == 2
    for m in (student, teacher):
        assert m["params"] > 0 and m["flops"] > 0 and m["activation_mb"] > 0 and m["latency_ms"]["median"] > 0
    ratio = report["compression"]["teacher"]
    assert ratio["params"] == pytest.approx(teacher["params"] / student["params"], rel=1e-3)
    assert ratio["flops"] == pytest.approx(teacher["flops"] / student["flops"], rel=1e-3) and ratio["flops"] > 1
    md = (tmp_path / "prof.md").read_text()
    assert "| teacher / student |" in md and "FlopCounterMode" in md and "thread" in md
    assert md in out.stdout

    # --input-size (channels from the data), and a config without a teacher
    from densekd.config import load_config

    sys.path.insert(0, str(ROOT / "tools"))
    from profile_model import profile_config

    small = profile_config(load_config(ROOT / "configs" / "cityscapes" / "demo" / "student_baseline.py"),
                           input_size=(32, 64), latency=False)
    assert small["models"][0]["input_shape"] == [1, 3, 32, 64] and small["inputs"]["student"]["source"].startswith(
        "--input-size")
    assert small["models"][0]["flops"] == pytest.approx(student["flops"] / 4, rel=0.05)  # a quarter of the pixels
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "profile_model.py"),
                          str(ROOT / "configs" / "cityscapes" / "demo" / "student_baseline.py"), "--teacher",
                          "--no-latency", "--out", str(tmp_path / "p2")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no teacher" in bad.stderr
