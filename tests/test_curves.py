"""tools/plot_curves.py: curves from metrics.jsonl, one subplot per key, runs overlaid and labelled."""
import json
import subprocess
import sys

import pytest

from densekd.engine.curves import load_runs, plot_curves, read_metrics, write_curves
from tests.conftest import ROOT

pytest.importorskip("matplotlib", reason="matplotlib not installed (pip install 'densekd[plot]')")


def write_run(path, losses, kd, val, lr=0.1, extra_lines=()):
    """metrics.jsonl as the trainer writes it: training lines (iter, epoch, lr, loss, loss/<term>) and validation
    lines (split='val', metrics)."""
    path.mkdir(parents=True)
    lines = []
    for i, (loss, k) in enumerate(zip(losses, kd), 1):
        entry = {"iter": 10 * i, "epoch": i / 2, "lr": lr / i, "loss": loss, "loss/seg": loss - (k or 0)}
        if k is not None:
            entry["loss/kd"] = k
        lines.append(entry)
    for it, miou in val:
        lines.append({"iter": it, "epoch": it / 20, "split": "val", "mIoU": miou, "pixel_acc": 50.0, "IoU/road": 1.0})
    text = "\n".join(json.dumps(e) for e in lines) + "\n" + "".join(extra_lines)
    (path / "metrics.jsonl").write_text(text)
    return path


def test_reads_training_and_validation_lines(tmp_path):
    run = write_run(tmp_path / "a", [3.0, 2.0], [1.0, 0.5], [(20, 40.0)],
                    extra_lines=['{"init_iter": 3, "loss/AB": 1.0}\n', '{"iter": 20, "epoch": 1, "lr": 0.05, '
                                 '"loss": "nan", "loss/seg": 1.0, "loss/kd": 0.4}\n', '{"iter": 30, "lo'])
    rec = read_metrics(run)
    assert sorted(rec["train"]) == [10, 20] and sorted(rec["val"]) == [20]
    assert rec["train"][20]["loss/kd"] == 0.4  # the later line of an iteration wins; a cut-off line is skipped
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(tmp_path / "nothing")


def test_plot_has_one_subplot_per_key_and_a_labelled_line_per_run(tmp_path):
    a = write_run(tmp_path / "baseline", [3.0, 2.5, 2.0], [None, None, None], [(30, 30.0)])
    b = write_run(tmp_path / "skd", [3.5, 2.6, 1.8], [1.0, 0.6, 0.3], [(30, 33.0)])
    runs = load_runs([a, b])
    fig, data = plot_curves(runs, ["loss", "loss/*", "mIoU", "lr"])
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["loss", "loss/seg", "loss/kd", "mIoU (val)", "lr"]
    loss_ax = axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["baseline", "skd"]
    assert list(loss_ax.get_lines()[1].get_xdata()) == [10, 20, 30]
    assert list(loss_ax.get_lines()[1].get_ydata()) == [3.5, 2.6, 1.8]
    kd_ax = axes[2]
    assert [line.get_label() for line in kd_ax.get_lines()] == ["skd"]  # the baseline has no KD term
    assert [line.get_label() for line in axes[3].get_lines()] == ["baseline", "skd"]
    assert list(axes[3].get_lines()[1].get_ydata()) == [33.0] and axes[3].get_xlabel() == "iteration"
    assert data["mIoU"] == [dict(run="baseline", split="val", x=[30], y=[30.0]),
                            dict(run="skd", split="val", x=[30], y=[33.0])]
    with pytest.raises(KeyError, match="mIoU"):
        plot_curves(runs, ["top1"])


def test_tool_writes_png_and_sidecar_with_labels(tmp_path):
    a = write_run(tmp_path / "r1" / "seed0", [3.0, 2.0], [1.0, 0.5], [(20, 40.0)])
    b = write_run(tmp_path / "r2" / "seed0", [2.5, 1.5], [0.8, 0.4], [(20, 45.0)])
    out = tmp_path / "plots" / "c.png"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_curves.py"), str(a), str(b), "--keys", "loss",
                           "loss/kd", "mIoU", "--labels", "KD", "CRD", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["keys"] == ["loss", "loss/kd", "mIoU"] and [r["label"] for r in side["runs"]] == ["KD", "CRD"]
    assert side["curves"]["loss/kd"][1] == dict(run="CRD", split="train", x=[10, 20], y=[0.8, 0.4])
    # default labels: the work dirs' names, made unique by their parents (both are seed0)
    fig, data = write_curves(load_runs([a, b]), tmp_path / "d.png")
    assert [ln["run"] for ln in data["loss"]] == ["r1/seed0", "r2/seed0"]
    assert list(data) == ["loss", "loss/seg", "loss/kd", "mIoU", "pixel_acc", "lr"]  # default keys
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_curves.py"), str(a), "--keys", "top1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "top1" in bad.stderr and "loss/kd" in bad.stderr


def test_missing_matplotlib_is_one_line_with_the_install_command(tmp_path):
    a = write_run(tmp_path / "a", [3.0], [1.0], [])
    hide = tmp_path / "hide"
    (hide / "matplotlib").mkdir(parents=True)
    (hide / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden for the test')\n")
    env = dict(__import__("os").environ, PYTHONPATH=f"{hide}:{ROOT}")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "plot_curves.py"), str(a)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "densekd[plot]" in proc.stderr
