"""tools/test.py --format-only: benchmark-format predictions that read back to the model's own predictions."""
import fnmatch
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from densekd.config import load_config
from densekd.data.cityscapes import Cityscapes
from densekd.data.nyu import depth_to_png
from densekd.data.synthetic_cityscapes import SyntheticCityscapes
from densekd.engine.builder import build_dataset, build_model, build_task
from tests.conftest import ROOT, write_config

# The official cityscapesScripts table (helpers/labels.py), labelId -> trainId for the 19 evaluated classes, written
# out here independently of densekd.data.cityscapes
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
                  27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

PSP = """
_base_ = ['{root}/configs/cityscapes/demo/student_baseline.py']
model = dict(encoder_depth=2, psp_out_channels=16)
data = dict(val=dict(num_samples=4), train=dict(num_samples=2), val_batch_size=3)
"""
DEPTH = """
_base_ = ['{root}/configs/nyu/demo/student_baseline.py']
data = dict(val=dict(num_samples=3), train=dict(num_samples=2), val_batch_size=2)
"""


def checkpoint(tmp_path, cfg_path):
    torch.manual_seed(0)
    model = build_model(load_config(cfg_path)["model"])
    path = tmp_path / "best.pth"
    torch.save({"model": model.state_dict()}, path)
    return path, model.eval()


def run_test(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def predictions(cfg_path, model):
    """The task's predictions of every data.val sample, computed here sample by sample."""
    cfg = load_config(cfg_path)
    val = build_dataset(cfg, "val")
    task = build_task(cfg, val)
    with torch.no_grad():
        return val, [task.predict(model, val[i]["image"][None])[0] for i in range(len(val))]


def test_cityscapes_predictions_are_official_label_id_pngs_that_round_trip(tmp_path):
    cfg = write_config(tmp_path / "psp.py", PSP.format(root=ROOT))
    ckpt, model = checkpoint(tmp_path, cfg)
    out = tmp_path / "results"
    proc = run_test(cfg, ckpt, "--format-only", "--out", out, "--overlay", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "mIoU" not in proc.stdout and "4 label files" in proc.stdout
    val, preds = predictions(cfg, model)
    walk = [(root, files) for root, _dirs, files in os.walk(out / "labelIds")]
    for i, pred in enumerate(preds):
        sid = val.sample_id(i)
        assert sid == f"{('synthcity', 'faketown')[i % 2]}_{i:06d}_000019"
        # cityscapesScripts' getPrediction: exactly one '<city>_<seq>_<frame>*.png' under the results folder
        hits = [os.path.join(r, f) for r, files in walk for f in fnmatch.filter(files, f"{sid}*.png")]
        assert hits == [str(out / "labelIds" / sid.split("_")[0] / f"{sid}_leftImg8bit.png")]
        ids = cv2.imread(hits[0], cv2.IMREAD_UNCHANGED)
        assert ids.dtype == np.uint8 and ids.ndim == 2 and ids.shape == (64, 128)
        assert set(np.unique(ids)) <= set(LABEL_TO_TRAIN)  # official label ids only, never train ids
        train = np.vectorize(LABEL_TO_TRAIN.get)(ids)
        assert np.array_equal(train, pred.argmax(0).numpy())
        overlay = cv2.imread(str(out / "overlay" / f"{sid}.png"))
        assert overlay.shape == (64, 128, 3)
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["samples"] == 4 and manifest["files"] == {"label": 4} and manifest["split"] == "val"


def test_real_cityscapes_samples_carry_their_official_ids(tmp_path):
    paths = SyntheticCityscapes.write_tree(str(tmp_path), split="val", n=3)
    ds = Cityscapes(str(tmp_path), split="val")
    assert [ds.sample_id(i) for i in range(3)] == sorted(os.path.basename(p)[:-len("_leftImg8bit.png")]
                                                         for p in paths)
    assert ds.result_path(0, "label") == f"labelIds/{ds.sample_id(0).split('_')[0]}/{ds.sample_id(0)}_leftImg8bit.png"
    train = np.array([[0, 18, 255], [13, 5, 19]])
    assert ds.encode_result("label", train).tolist() == [[7, 33, 0], [26, 17, 0]]  # 255 / out of range: unlabeled
    with pytest.raises(ValueError, match="label"):
        ds.result_path(0, "depth")


@pytest.mark.skipif(__import__("importlib").util.find_spec("cityscapesscripts") is None,
                    reason="cityscapesscripts not installed (the official evaluation; not a densekd dependency)")
def test_official_evaluation_of_the_files_equals_densekd_miou(tmp_path):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    SyntheticCityscapes.write_tree(str(tmp_path / "cs"), split="val", n=4)
    cfg = write_config(tmp_path / "real.py", PSP.format(root=ROOT) + (
        f"data = dict(val=dict(_delete_=True, type='Cityscapes', root='{tmp_path / 'cs'}', split='val'))\n"))
    ckpt, _ = checkpoint(tmp_path, cfg)
    assert run_test(cfg, ckpt, "--format-only", "--out", tmp_path / "res", "--device", "cpu").returncode == 0
    ours = run_test(cfg, ckpt, "--device", "cpu", "--out", tmp_path / "m.json")
    miou = json.loads((tmp_path / "m.json").read_text())["mIoU"]
    official.args.evalInstLevelScore = False
    official.args.predictionPath = str(tmp_path / "res" / "labelIds")
    official.args.quiet = True
    official.args.exportFile = str(tmp_path / "official.json")
    gts = sorted(str(p) for p in (tmp_path / "cs" / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    result = official.evaluateImgLists([official.getPrediction(official.args, g) for g in gts], gts, official.args)
    assert ours.returncode == 0 and 100 * result["averageScoreClasses"] == pytest.approx(miou, abs=1e-6)


def test_nyu_depth_predictions_are_millimetre_pngs_that_round_trip(tmp_path):
    cfg = write_config(tmp_path / "depth.py", DEPTH.format(root=ROOT))
    ckpt, model = checkpoint(tmp_path, cfg)
    out = tmp_path / "results"
    proc = run_test(cfg, ckpt, "--format-only", "--out", out, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    val, preds = predictions(cfg, model)
    assert len(preds) == 3
    for i, pred in enumerate(preds):
        png = cv2.imread(str(out / "depth" / f"test_{i + 1:04d}.png"), cv2.IMREAD_UNCHANGED)
        assert png.dtype == np.uint16 and png.shape == (96, 128)
        metres = png.astype(np.float64) / 1000.0
        # half a millimetre of rounding, plus float32 noise between batched and single-image passes (~1e-6 m)
        assert (png > 0).all() and np.abs(metres - pred[0].double().numpy()).max() <= 0.0005 + 2e-5
    # the encoding itself: millimetres, 0 = invalid, clipped to the uint16 range
    assert depth_to_png(np.array([[1.2344, 0.0, -1.0], [np.nan, 1e-5, 99.0]])).tolist() == [[1234, 0, 0],
                                                                                           [0, 1, 65535]]
    # a task without a benchmark format, and --overlay of a depth task, are one-line errors
    bad = run_test(cfg, ckpt, "--format-only", "--out", out, "--overlay", "--device", "cpu")
    assert bad.returncode == 2 and "overlay" in bad.stderr and bad.stderr.count("\n") == 1
    assert run_test(cfg, ckpt, "--format-only").returncode == 2
