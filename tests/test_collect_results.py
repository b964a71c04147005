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


def test_published_rows_of_reviewkd_and_mlkd(tmp_path):
    for method, value in (("reviewkd", 75.0), ("mlkd", 77.0), ("mlkd_ls", 78.0)):
        fake(tmp_path, f"cifar100/distill/resnet32x4-resnet8x4/{method}", 0, value, value)
        fake(tmp_path, f"cifar100/distill/resnet110-resnet20/{method}", 0, 70.0, 70.0)
    text = table(collect([tmp_path]), "final", published=True)
    rows = {l.split("|")[1].strip(): l for l in text.splitlines() if l.startswith("| ")}
    assert "75.00 (75.63)" in rows["ReviewKD"] and "70.00 (-)" in rows["ReviewKD"]  # no resnet110 -> resnet20 entry
    assert "77.00 (77.08)" in rows["MLKD"] and "70.00 (71.89)" in rows["MLKD"]
    assert "78.00 (78.28)" in rows["MLKD+LS"] and "70.00 (72.27)" in rows["MLKD+LS"]
    assert "ReviewKD: Chen et al. 2021" in text and "MLKD: Jin et al. 2023" in text and "MLKD+LS: Sun et al. 2024" in text
    assert list(rows).index("ReviewKD") < list(rows).index("MLKD") < list(rows).index("MLKD+LS")


def fake_seg(root, config, seed, final, best, completed=True):
    d = root / config.replace("/", "_") / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "config": str(ROOT / "configs" / f"{config}.py"), "seed": seed, "primary_metric": "mIoU",
        "final": {"mIoU": final, "pixel_acc": 90.0}, "best": {"mIoU": best, "pixel_acc": 91.0},
        "completed": completed}))


def test_cirkd_cityscapes_table_with_published_numbers(tmp_path):
    from densekd.engine.results import cirkd_table, report

    cirkd = [76.0, 76.4]
    for s, v in enumerate(cirkd):
        fake_seg(tmp_path, "cityscapes/cirkd/deeplabv3_r18_cirkd", s, v, v + 0.2)
    fake_seg(tmp_path, "cityscapes/cirkd/deeplabv3_r18_baseline", 0, 74.0, 74.3)
    fake_seg(tmp_path, "cityscapes/cirkd/deeplabv3_mbv2_cwd", 0, 74.5, 74.6)
    fake_seg(tmp_path, "cityscapes/cirkd/pspnet_r18_dist", 0, 76.0, 76.1, completed=False)
    fake_seg(tmp_path, "cityscapes/cirkd/deeplabv3_r101_teacher", 0, 78.0, 78.2)
    fake(tmp_path, "cifar100/distill/resnet32x4-resnet8x4/kd", 0, 73.1, 73.5)
    cells = collect([tmp_path])
    assert cells[("cirkd", "deeplabv3_r18")].final == cirkd and ("teacher", "deeplabv3_r101") in cells
    text = cirkd_table(cells, "final", published=True)
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in text.splitlines()
            if l.startswith("| ")}
    assert rows["Method"] == ["DeepLabV3-R18", "DeepLabV3-MBV2", "PSPNet-R18"]
    assert rows["CIRKD"] == [f"{np.mean(cirkd):.2f} ± {np.std(cirkd, ddof=1):.2f} (76.38)", "(75.42)", "(74.73)"]
    assert rows["Baseline"] == ["74.00 (74.21)", "(73.12)", "(72.55)"]
    assert rows["CWD"] == ["(75.55)", "74.50 (74.66)", "(-)"]
    assert rows["SKD"] == ["(75.42)", "(73.82)", "(-)"] and rows["IFVD"] == ["(75.59)", "(73.50)", "(-)"]
    assert rows["DIST"] == ["(77.10)", "(-)", "76.00* (76.31)"]
    assert rows["Teacher (DeepLabV3-R101)"] == ["78.00 (78.07)"] * 3
    assert list(rows)[1:] == ["Teacher (DeepLabV3-R101)", "Baseline", "SKD", "IFVD", "CWD", "CIRKD", "DIST"]
    assert "DIST: Huang et al. 2022" in text and "stopped before the end" in text and "**last evaluation**" in text
    best = cirkd_table(cells, "best")
    assert f"{np.mean(cirkd) + 0.2:.2f}" in best and "(76.38)" not in best and "(-)" not in best  # ours only
    assert "PSPNet-R18" in best and "SKD" not in best  # without --published only the rows and columns that ran
    both = report(cells, published=True)
    assert both.count("Top-1 at the") == 2 and both.count("Cityscapes val mIoU") == 2
    cifar = [l for l in both.split("Cityscapes val mIoU")[0].splitlines() if l.startswith("| Teacher →")][0]
    assert "deeplabv3" not in cifar  # the Cityscapes runs stay out of the CRD-shaped table
    out = subprocess.run([sys.executable, str(ROOT / "tools/collect_results.py"), str(tmp_path), "--published"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "| CIRKD | 76.20 ± 0.28 (76.38) | (75.42) | (74.73) |" in out.stdout


def fake_imagenet(root, config, seed, top1, top5, completed=True):
    d = root / config.replace("/", "_") / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "config": str(ROOT / "configs" / f"{config}.py"), "seed": seed, "primary_metric": "top1",
        "final": {"top1": top1, "top5": top5}, "best": {"top1": top1 + 0.5, "top5": top5 + 0.2},
        "completed": completed}))


def test_table3_gives_top1_and_top5_error_beside_crds_published_ones(tmp_path):
    from densekd.engine.results import IMAGENET_PUBLISHED, collect_imagenet, imagenet_table

    fake_imagenet(tmp_path, "imagenet/teachers/resnet34", 0, 73.31, 91.42)
    fake_imagenet(tmp_path, "imagenet/students/resnet18", 0, 69.80, 89.10)
    crd = [(71.1, 90.1), (71.3, 90.2)]
    for seed, (t1, t5) in enumerate(crd):
        fake_imagenet(tmp_path, "imagenet/distill/resnet34-resnet18/crd", seed, t1, t5)
    fake_imagenet(tmp_path, "imagenet/distill/resnet34-resnet18/dkd", 0, 71.6, 90.3, completed=False)
    fake(tmp_path, "cifar100/distill/resnet32x4-resnet8x4/kd", 0, 73.1, 73.4)  # a CIFAR run: Table 1 only
    cells = collect_imagenet([tmp_path])
    assert set(cells) == {"teacher", "student", "crd", "dkd"}
    text = imagenet_table(cells, "final")
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in text.splitlines()
            if l.startswith("| ")}
    assert rows[""] == ["Teacher", "Student", "CRD", "DKD"]
    top1, top5 = rows["Top-1 error"], rows["Top-5 error"]
    assert top1[0] == "26.69" and top5[0] == "8.58"  # 100 - accuracy
    errors1 = [100 - a for a, _ in crd]
    assert top1[2] == f"{np.mean(errors1):.2f} ± {np.std(errors1, ddof=1):.2f}"
    assert top1[3] == "28.40*" and "stopped before the end" in text and "**last epoch**" in text
    best = imagenet_table(cells, "best", published=True)
    rows = {l.split("|")[1].strip(): [c.strip() for c in l.split("|")[2:-1]] for l in best.splitlines()
            if l.startswith("| ")}
    assert rows[""] == ["Teacher", "Student", "KD", "AT", "SP", "CC", "CRD", "CRD+KD", "DKD", "DIST"]
    assert rows["Top-1 error"][0] == "26.19 (26.69)" and rows["Top-5 error"][1] == "10.70 (10.93)"
    assert rows["Top-1 error"][2] == "(29.34)" and rows["Top-5 error"][7] == "(9.51)"
    assert rows["Top-1 error"][8] == "27.90* (28.30)" and rows["Top-5 error"][8] == "9.50* (-)"
    assert rows["Top-1 error"][9] == "(27.93)" and "mdistiller" in best and "DIST_KD" in best
    assert IMAGENET_PUBLISHED["crd_kd"] == (28.62, 9.51) and IMAGENET_PUBLISHED["cc"] == (30.04, 10.83)
    out = subprocess.run([sys.executable, str(ROOT / "tools/collect_results.py"), str(tmp_path), "--published"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    table1, table3 = out.stdout.split("ImageNet, ResNet-34", 1)
    assert "resnet32x4 → resnet8x4" in table1 and "resnet34" not in table1 and "CRD Table 3" in table3
