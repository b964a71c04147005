"""Tables over repeated pipelines (CRD's cross-modal NYU table)."""
import json
import statistics
import subprocess
import sys

from tests.conftest import ROOT


def write(root, variant, seed, stage, pixel, miou, completed=True):
    d = root / variant / f"seed{seed}" / stage
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"final": {"pixel_acc": pixel, "mIoU": miou}, "completed": completed}))


def test_crossmodal_table_means_over_seeds_with_published_numbers(tmp_path):
    root = tmp_path / "nyu_crossmodal"
    for seed, (p, m) in enumerate([(50.0, 30.0), (52.0, 34.0)]):
        write(root, "crd", seed, "probe", p, m)
        write(root, "crd", seed, "finetune", p + 5, m + 5)
    write(root, "random_init", 0, "probe", 40.0, 20.0)
    write(root, "random_init", 1, "probe", 99.0, 99.0, completed=False)  # a smoke run: counted, not used
    out = subprocess.run([sys.executable, str(ROOT / "tools/crossmodal_table.py"), str(root), "--out",
                          str(tmp_path / "t.md")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == ("| method | probe pixel_acc | probe mIoU | finetune pixel_acc | finetune mIoU | seeds | "
                        "published pixel_acc | published mIoU |")
    rand, crd = lines[2], lines[3]  # CRD's row order: random init first
    assert rand == "| Random init | 40.00 | 20.00 | – | – | 1 (+1 incomplete) | 56.4 | 35.8 |"
    sd = statistics.stdev([30.0, 34.0])
    assert crd == (f"| CRD | 51.00 ± {statistics.stdev([50.0, 52.0]):.2f} | 32.00 ± {sd:.2f} | 56.00 ± 1.41 | "
                   f"37.00 ± {sd:.2f} | 2 | 61.6 | 41.8 |")
    missing = subprocess.run([sys.executable, str(ROOT / "tools/crossmodal_table.py"), str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "run the pipelines first" in missing.stderr
