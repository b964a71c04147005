"""tools/demo.py --quick: the whole demo pipeline (teacher, baseline, distilled student, table, pictures)."""
import json
import math
import re
import subprocess
import sys

from tests.conftest import ROOT


def test_demo_quick_writes_table_results_and_pictures(tmp_path):
    wd = tmp_path / "demo"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "--quick", "--work-dir", str(wd),
                           "--threads", "1", "--pictures", "2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert [r["stage"] for r in results["rows"]] == ["teacher", "baseline", "skd"]
    for row in results["rows"]:
        assert 0.0 <= row["mIoU"] <= 100.0 and 0.0 <= row["pixel_acc"] <= 100.0, row
        assert row["iters"] == 3 and row["params_M"] > 0
    base, skd = results["rows"][1], results["rows"][2]
    assert math.isclose(results["kd_gain_mIoU"], skd["mIoU"] - base["mIoU"], abs_tol=1e-3)
    assert results["quick"] is True and results["threads"] == 1

    # each stage is a real training run with the standard work-dir artifacts
    for stage in ("teacher", "baseline", "skd"):
        assert (wd / stage / "checkpoints" / "best.pth").is_file()
        summary = json.loads((wd / stage / "summary.json").read_text())
        assert summary["final"]["mIoU"] == next(r["mIoU"] for r in results["rows"] if r["stage"] == stage)
    assert json.loads((wd / "skd" / "summary.json").read_text())["distill"] == ["PixelWiseKD", "PairWiseKD"]
    assert json.loads((wd / "baseline" / "summary.json").read_text())["distill"] == []
    # the distilled student loaded the teacher trained in the first stage (no warning about a missing one)
    assert "checkpoint not found" not in (wd / "skd" / "train.log").read_text()

    md = (wd / "results.md").read_text()
    assert "| model | mIoU (%) | pixel acc (%)" in md and "| params (M) | GFLOPs |" in md
    assert all(r["gflops"] > 0 for r in results["rows"])
    assert results["rows"][0]["gflops"] > results["rows"][1]["gflops"]  # the output-stride-4 teacher costs more
    # the training curves of the three stages
    curves = json.loads((wd / "curves.json").read_text())
    assert (wd / "curves.png").is_file() and results["curves"].endswith("curves.png")
    assert {"loss", "loss/seg", "loss/PixelWiseKD", "mIoU", "lr"} <= set(curves["keys"])
    assert [line["run"] for line in curves["curves"]["loss"]] == ["teacher", "baseline", "skd"]
    assert [line["run"] for line in curves["curves"]["loss/PixelWiseKD"]] == ["skd"]
    for row in results["rows"]:
        assert f"{row['mIoU']:.2f}" in md
    # the table is printed too
    assert re.search(r"\| Student \+ structured KD.*\|\s*[\d.]+\s*\|", proc.stdout)
    pics = sorted((wd / "pictures").glob("val_*.png"))
    assert len(pics) == 2 and (wd / "pictures" / "legend.png").is_file()
    import cv2

    img = cv2.imread(str(pics[0]))
    assert img.shape[1] == 5 * 128 + 4 * 2  # image | ground truth | teacher | baseline | distilled


def test_depth_demo_quick_writes_its_table_and_depth_pictures(tmp_path):
    wd = tmp_path / "demo_depth"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "depth", "--quick", "--work-dir", str(wd),
                           "--threads", "1", "--pictures", "1"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert results["demo"] == "depth" and [r["stage"] for r in results["rows"]] == ["teacher", "baseline", "kd"]
    base, kd = results["rows"][1], results["rows"][2]
    assert math.isclose(results["kd_gain_abs_rel"], kd["abs_rel"] - base["abs_rel"], abs_tol=1e-4)
    assert all(r["abs_rel"] > 0 and 0 <= r["delta1"] <= 1 for r in results["rows"])
    assert json.loads((wd / "kd" / "summary.json").read_text())["distill"] == ["DepthKD"]
    assert "checkpoint not found" not in (wd / "kd" / "train.log").read_text()
    assert "| model | abs rel ↓ | rmse (m) ↓ | δ1 ↑ |" in (wd / "results.md").read_text()
    import cv2

    img = cv2.imread(str(wd / "pictures" / "val_000.png"))
    assert img.shape[1] == 5 * 128 + 4 * 2 and (wd / "pictures" / "legend.png").is_file()


def test_crossmodal_demo_quick_compares_random_and_crd_features(tmp_path):
    wd = tmp_path / "demo_xm"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "crossmodal", "--quick", "--work-dir",
                           str(wd), "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert [r["stage"] for r in results["rows"]] == ["teacher", "crd", "probe_random", "probe_crd"]
    probes = {r["stage"]: r for r in results["rows"][2:]}
    assert math.isclose(results["crd_gain_mIoU"], probes["probe_crd"]["mIoU"] - probes["probe_random"]["mIoU"],
                        abs_tol=1e-3)
    crd_cfg = (wd / "crd" / "config.py").read_text()
    assert "CRD" in crd_cfg and str(wd / "teacher" / "checkpoints" / "best.pth") in crd_cfg
    assert str(wd / "crd" / "checkpoints" / "last.pth") in (wd / "probe_crd" / "config.py").read_text()
    assert "| Depth segmentation, head on frozen CRD features |" in (wd / "results.md").read_text()


def test_stl10_demo_quick_compares_random_and_crd_ab_features(tmp_path):
    wd = tmp_path / "demo_stl10"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "demo.py"), "stl10", "--quick", "--work-dir", str(wd),
                           "--threads", "1"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((wd / "results.json").read_text())
    assert results["demo"] == "stl10" and results["quick"] is True
    assert [r["stage"] for r in results["stages"]] == ["teacher", "crd", "random"]
    rows = {r["stage"]: r for r in results["rows"]}
    assert list(rows) == ["random", "crd"] and rows["random"]["pretrain_iters"] == 0
    assert math.isclose(results["crd_gain_probe_top1"], rows["crd"]["probe_top1"] - rows["random"]["probe_top1"],
                        abs_tol=1e-3)
    assert math.isclose(results["crd_gain_finetune_top1"],
                        rows["crd"]["finetune_top1"] - rows["random"]["finetune_top1"], abs_tol=1e-3)
    # the CRD student read the L teacher trained in the first stage, on the unlabelled pictures
    crd_cfg = (wd / "crd" / "config.py").read_text()
    assert "CRD" in crd_cfg and str(wd / "teacher" / "checkpoints" / "best.pth") in crd_cfg
    assert "checkpoint not found" not in (wd / "crd" / "train.log").read_text()
    # each probe read its own checkpoint; each fine-tuning started from it with a new head
    for name in ("random", "crd"):
        probe = json.loads((wd / f"probe_{name}" / "probe_summary.json").read_text())
        assert probe["checkpoint"] == str(wd / name / "checkpoints" / "last.pth") and probe["layer"] == "feats[-1]"
        assert probe["final"]["linear_probe_top1"] == rows[name]["probe_top1"]
        log = (wd / f"finetune_{name}" / "train.log").read_text()
        assert "load_from: loaded" in log and str(wd / name / "checkpoints" / "last.pth") in log
    md = (wd / "results.md").read_text()
    assert "| ab student, CRD from the L teacher |" in md and "linear probe top-1" in md
    assert "| ab student, random init |" in proc.stdout
