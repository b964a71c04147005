"""Every NYU config validates on --synthetic; the distillation ones train through the Trainer."""
import math

import pytest

from densekd.config import load_config
from densekd.engine.builder import use_synthetic
from densekd.engine.schema import validate
from densekd.engine.trainer import Trainer
from tests.conftest import ROOT

CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "configs/nyu").rglob("*.py") if "_base_" not in p.parts)


def synthetic(path, overrides=()):
    cfg = load_config(ROOT / path, list(overrides))
    use_synthetic(cfg)
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=str)
def test_config_validates(path):
    validate(synthetic(path))


def test_the_configs_cover_depth_segmentation_and_multitask_distillation():
    names = {str(p) for p in CONFIGS}
    for method in ("depthkd", "depthkd_silog", "depthkd_confidence", "pairwise", "holistic", "fitnet", "at", "cwd"):
        assert f"configs/nyu/depth/r101-r18_{method}.py" in names
    assert {"configs/nyu/seg40/r101-r18_skd.py", "configs/nyu/multitask/fpn_r18_seg_depth_kd.py"} <= names
    kd = load_config(ROOT / "configs/nyu/multitask/fpn_r18_seg_depth_kd.py")
    assert [t["model"]["type"] for t in kd["teachers"]] == ["seg_model", "depth_model"]
    assert [(d["type"], d["student"], d["teachers"]) for d in kd["distill"]] == [
        ("PixelWiseKD", "output.seg", 0), ("DepthKD", "output.depth", 1)]


@pytest.mark.parametrize("path", ["configs/nyu/depth/r101-r18_depthkd.py", "configs/nyu/multitask/fpn_r18_seg_depth_kd.py"])
def test_distillation_configs_train_on_synthetic_rooms(path, tmp_path):
    cfg = synthetic(path, ["data.batch_size=2", "data.num_workers=0"])
    cfg["data"]["train"]["num_samples"] = 2
    cfg["data"]["val"]["num_samples"] = 2
    summary = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=1).train()
    assert summary["iters"] == 1 and math.isfinite(summary["final"]["abs_rel"])


@pytest.mark.parametrize("path", ["configs/nyu/depth/student_fpn_r18.py", "configs/nyu/seg40/student_pspnet_r18.py",
                                  "configs/nyu/multitask/fpn_r18_seg_depth.py"])
def test_configs_train_on_files_in_the_official_formats_via_data_root(path, tmp_path):
    """The REAL loaders on files written in the official formats: labeled .mat, splits.mat, classMapping40.mat
    and a raw-frame list with uint16 millimetre PNGs, through tools/train.py --data-root."""
    import json
    import subprocess
    import sys

    from densekd.data.synthetic_nyu import SyntheticNYUDepthRaw, SyntheticNYUDepthV2

    root = tmp_path / "nyu"
    SyntheticNYUDepthV2.write_tree(str(root), n_train=4, n_test=2, size=(64, 96))
    SyntheticNYUDepthRaw.write_tree(str(root), n=4, size=(64, 96))
    wd = tmp_path / "w"
    out = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), str(ROOT / path), "--data-root", str(root),
                          "--max-iters", "1", "--work-dir", str(wd), "--device", "cpu", "--cfg-options",
                          "data.batch_size=2", "data.num_workers=0", "data.train.crop_size=(64,96)"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 1 and not summary["synthetic"]
    assert summary["final"] and all(math.isfinite(v) for k, v in summary["final"].items() if "/" not in k)


def test_depth_holistic_critic_reads_the_heads_quarter_resolution_output(tmp_path):
    """The NYU holistic config's critic judges the depth head's raw output before its x4 upsampling (1/4 of the
    input), as the structured-KD reference's critic reads pre-upsampling outputs; a step trains it."""
    from densekd.losses.adversarial import HolisticKD

    cfg = synthetic("configs/nyu/depth/r101-r18_holistic.py", ["data.batch_size=2", "data.num_workers=0"])
    cfg["data"]["train"]["num_samples"] = 2
    cfg["data"]["val"]["num_samples"] = 2
    trainer = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=1)
    distiller = trainer.strategy.distiller
    term = next(t for t in distiller.terms if t.cfg["type"] == "HolisticKD")
    assert term.s_paths == ["segmentation_head.0"] and term.t_paths == ["segmentation_head.0"]
    batch = next(trainer.batches(0))
    seen = []
    critic = next(m for m in distiller.losses.values() if isinstance(m, HolisticKD)).discriminator
    critic.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    trainer.train_iteration(batch)
    h, w = batch["image"].shape[-2:]
    assert seen and all(s[-2:] == (h // 4, w // 4) and s[1] == 1 for s in seen)
    trainer.close()
