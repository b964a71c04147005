import json
import subprocess
import sys

import numpy as np

from densekd.config import load_config
from densekd.engine.builder import build_model
from densekd.engine.results import collect, table
from densekd.engine.trainer import Trainer
from tests.conftest import ROOT


def fake(root, config, seed, final, best, completed=True):
    d = root / config.replace("/", "_") / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "config": str(ROOT / "configs" / f"{config}.py"), "seed": seed, "primary_metric": "top1",
        "final": {"top1": final}, "best": {"top1": best}, "completed": completed}))


def test_table_has_crd_shape_with_mean_std_over_seeds(tmp_path):
    kd = [73.1, 73.5, 72.9]
    for s, v in enumerate(kd):
        fake(tmp_path, "cifar100/distill/resnet32x4-resnet8x4/kd", s, v, v + 0.4)
    fake(tmp_path, "cifar100/distill/resnet32x4-resnet8x4/crd", 0, 75.0, 75.2)
    fake(tmp_path, "cifar100/distill/vgg13-vgg8/crd", 0, 73.0, 74.0, completed=False)
    fake(tmp_path, "cifar100/teachers/resnet32x4", 0, 79.0, 79.3)
    fake(tmp_path, "cifar100/students/resnet8x4", 0, 72.0, 72.6)
    cells = collect([tmp_path])
    last = table(cells, "final")
    lines = last.splitlines()
    assert "**last epoch**" in lines[0]
    assert lines[2].split("|")[2].strip() == "resnet32x4 → resnet8x4" and "vgg13 → vgg8" in lines[2]
    kd_row = next(l for l in lines if l.startswith("| KD |"))
    assert f"{np.mean(kd):.2f} ± {np.std(kd, ddof=1):.2f}" in kd_row
    assert "| Teacher | 79.00 |" in last and "| Student | 72.00 |" in last
    crd_row = next(l for l in lines if l.startswith("| CRD |"))
    assert "75.00" in crd_row and "73.00*" in crd_row and "stopped before the end" in last
    best = table(cells, "best", published=True)
    assert "**best epoch**" in best and f"{np.mean(kd) + 0.4:.2f}" in best and "(73.33)" in best


def test_works_on_real_training_outputs(tiny_config, tmp_path):
    cfg = tiny_config(epochs=1)
    finals = []
    for seed in (0, 1):
        finals.append(Trainer(load_config(cfg, [f"seed={seed}"]), tmp_path / "runs" / f"seed{seed}", device="cpu",
                              synthetic=True).train()["final"]["top1"])
    out = subprocess.run([sys.executable, str(ROOT / "tools/collect_results.py"), str(tmp_path / "runs"), "--out",
                          str(tmp_path / "t.md")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    row = next(l for l in (tmp_path / "t.md").read_text().splitlines() if l.startswith("| tiny |"))
    assert f"{np.mean(finals):.2f}" in row and row.rstrip().endswith("| 2 |")
    # the parameters and FLOPs of the run's network, from summary.json's cost, beside the accuracy
    summary = json.loads((tmp_path / "runs" / "seed0" / "summary.json").read_text())
    model = build_model(load_config(cfg)["model"])
    assert summary["cost"]["params"] == sum(p.numel() for p in model.parameters())
    assert summary["cost"]["input_shape"] == [1, 3, 32, 32] and summary["cost"]["flops"] > 0
    cells = row.split("|")
    assert cells[3].strip() == f"{summary['cost']['params'] / 1e6:.2f}"
    assert cells[4].strip() == f"{summary['cost']['flops'] / 1e9:.3f}"
    empty = subprocess.run([sys.executable, str(ROOT / "tools/collect_results.py"), str(tmp_path / "nothing")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and "no summary.json" in empty.stderr


def test_cost_table_of_the_pairs_with_compression_ratios(tmp_path):
    def run(config, params, flops):
        fake(tmp_path, config, 0, 70.0, 70.5)
        path = tmp_path / config.replace("/", "_") / "seed0" / "summary.json"
        s = json.loads(path.read_text())
        s["cost"] = dict(params=params, flops=flops, input_shape=[1, 3, 32, 32])
        path.write_text(json.dumps(s))

    run("cifar100/teachers/resnet32x4", 7_430_000, 1_080_000_000)
    run("cifar100/distill/resnet32x4-resnet8x4/kd", 1_230_000, 180_000_000)
    text = table(collect([tmp_path]), "final")
    row = next(l for l in text.splitlines() if l.startswith("| resnet32x4 → resnet8x4 | 7.43"))
    assert [c.strip() for c in row.split("|")[2:-1]] == ["7.43", "1.080", "1.23", "0.180", "6.0x", "6.0x"]


def test_published_rows_of_the_newer_methods_name_their_source(tmp_path):
    for method, value in (("dist", 76.0), ("kd_ls", 76.5), ("dkd_ls", 76.9), ("kdsvd", 73.0)):
        fake(tmp_path, f"cifar100/distill/resnet32x4-resnet8x4/{method}", 0, value, value)
    fake(tmp_path, "cifar100/distill/vgg13-vgg8/dist", 0, 73.0, 73.0)
    text = table(collect([tmp_path]), "final", published=True)
    rows = {l.split("|")[1].strip(): l for l in text.splitlines() if l.startswith("| ")}
    assert "76.00 (76.31)" in rows["DIST"] and "73.00 (-)" in rows["DIST"]
    assert "76.50 (76.62)" in rows["KD+LS"] and "76.90 (77.01)" in rows["DKD+LS"]
    assert "73.00" in rows["KDSVD"] and "(" not in rows["KDSVD"]  # no published number
    assert "DIST: Huang et al. 2022" in text and "Sun et al. 2024" in text
    assert list(rows).index("DIST") < list(rows).index("KD+LS") < list(rows).index("DKD+LS")
