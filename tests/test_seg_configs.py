"""Cityscapes segmentation configs: they load and validate, encode the published recipes, compose the
teacher from its own config, and run end to end (synthetic smoke run, missing-teacher error)."""
import json
import math
import subprocess
import sys

import pytest

from densekd.config import load_config
from densekd.engine.schema import validate
from tests.conftest import ROOT

CONFIGS = ROOT / "configs"
SEG_CONFIGS = sorted(
    [p for p in CONFIGS.glob("seg_*.py")]
    + [p for p in (CONFIGS / "cityscapes").rglob("*.py") if "_base_" not in p.parts]
)
KD = CONFIGS / "seg_pspnet_kd.py"
TRAIN = [sys.executable, str(ROOT / "tools" / "train.py")]
SMALL = ["data.batch_size=2", "data.val.num_samples=4", "data.train.num_samples=8", "data.num_workers=0",
         "data.train.image_size=(32,64)", "data.val.image_size=(32,64)"]


def rel(path):
    return str(path.relative_to(ROOT))


def load(name):
    return load_config(CONFIGS / name)


def test_the_expected_configs_exist():
    names = {rel(p) for p in SEG_CONFIGS}
    for expected in ["configs/seg_pspnet_kd.py", "configs/cityscapes/pspnet_r101_teacher.py",
                     "configs/cityscapes/pspnet_r18_baseline.py", "configs/cityscapes/pspnet_r18_pi.py",
                     "configs/cityscapes/pspnet_r18_pi_pa.py", "configs/cityscapes/pspnet_r18_pi_pa_ho.py",
                     "configs/cityscapes/pspnet_r18_cwd.py", "configs/cityscapes/cirkd/deeplabv3_r101_teacher.py",
                     "configs/cityscapes/cirkd/deeplabv3_r18_baseline.py",
                     "configs/cityscapes/cirkd/deeplabv3_r18_skd.py", "configs/cityscapes/cirkd/deeplabv3_r18_cwd.py",
                     "configs/cityscapes/cirkd/deeplabv3_r18_dist.py", "configs/cityscapes/cirkd/deeplabv3_r18_ifvd.py",
                     "configs/cityscapes/cirkd/pspnet_r18_baseline.py", "configs/cityscapes/cirkd/pspnet_r18_dist.py",
                     "configs/cityscapes/cirkd/deeplabv3_r18_cirkd.py", "configs/cityscapes/cirkd/pspnet_r18_cirkd.py",
                     "configs/cityscapes/cirkd/deeplabv3_mbv2_baseline.py",
                     "configs/cityscapes/cirkd/deeplabv3_mbv2_skd.py", "configs/cityscapes/cirkd/deeplabv3_mbv2_cwd.py",
                     "configs/cityscapes/cirkd/deeplabv3_mbv2_ifvd.py", "configs/cityscapes/cirkd/deeplabv3_mbv2_cirkd.py",
                     "configs/cityscapes/demo/teacher.py", "configs/cityscapes/demo/student_baseline.py",
                     "configs/cityscapes/demo/student_skd.py"]:
        assert expected in names


@pytest.mark.parametrize("path", SEG_CONFIGS, ids=rel)
def test_config_loads_validates_and_names_its_teacher(path):
    cfg = load_config(path)
    validate(cfg)
    assert cfg["task"]["type"] == "segmentation" and cfg["task"]["num_classes"] == 19
    assert cfg["model"]["type"] == "seg_model" and cfg["model"].get("num_classes", 19) == 19
    assert cfg["train"]["iters"] > 0 and cfg["lr_schedule"]["type"] == "poly"
    if not cfg.get("distill"):
        assert "teacher" not in cfg
        return
    teacher = cfg["teacher"]
    teacher_cfg_path = ROOT / teacher["config"]
    assert teacher_cfg_path.is_file(), teacher["config"]
    # default work dir of the teacher config: work_dirs/<path under configs/ without .py>
    under = teacher["config"][len("configs/"):-len(".py")]
    assert teacher["checkpoint"] == f"work_dirs/{under}/checkpoints/best.pth"
    trained = load_config(teacher_cfg_path)
    assert "distill" not in trained
    expected = {k: v for k, v in trained["model"].items() if k != "pretrained"}
    assert teacher["model"] == expected  # the teacher is the network its config trains


def test_teacher_checkpoint_is_where_the_teacher_config_writes():
    from densekd.engine.launch import default_work_dir

    cfg = load("seg_pspnet_kd.py")
    teacher_cfg = load_config(ROOT / cfg["teacher"]["config"])
    assert str(default_work_dir(teacher_cfg, None) / "checkpoints" / "best.pth") == cfg["teacher"]["checkpoint"]


def test_seg_pspnet_kd_is_the_reference_recipe():
    cfg = load("seg_pspnet_kd.py")
    assert cfg["model"]["arch"] == "PSPNet" and cfg["model"]["encoder"] == "resnet18" and cfg["model"]["aux_head"]
    assert cfg["teacher"]["model"]["arch"] == "PSPNet" and cfg["teacher"]["model"]["encoder"] == "resnet101"
    assert cfg["teacher"]["config"] == "configs/cityscapes/pspnet_r101_teacher.py"
    assert cfg["task"]["aux_weight"] == 0.4 and cfg["task"]["ignore_index"] == 255
    train = cfg["data"]["train"]
    assert train["type"] == "Cityscapes" and tuple(train["crop_size"]) == (512, 512)
    assert tuple(train["scale_range"]) == (0.5, 2.0) and train["flip"] is True
    assert cfg["data"]["val"]["split"] == "val"
    assert cfg["data"]["batch_size"] == 8 and cfg["train"]["iters"] == 40000
    assert cfg["train"]["eval_interval"] == 4000
    opt = cfg["optimizer"]
    assert (opt["type"], opt["lr"], opt["momentum"], opt["weight_decay"]) == ("SGD", 0.01, 0.9, 5e-4)
    assert cfg["lr_schedule"]["power"] == 0.9 and cfg["lr_schedule"]["by_epoch"] is False
    terms = {t["type"]: t for t in cfg["distill"]}
    assert list(terms) == ["PixelWiseKD", "PairWiseKD", "HolisticKD"]
    # lambda_pi = 10 on the reference's per-image normalisation == 10 * batch on a per-pixel mean
    assert terms["PixelWiseKD"]["weight"] == 10 * cfg["data"]["batch_size"]
    assert terms["PairWiseKD"]["weight"] == 1.0 and terms["PairWiseKD"]["scale"] == 0.5
    assert terms["PairWiseKD"]["student"] == "decoder"
    assert terms["HolisticKD"]["weight"] == 0.1
    assert terms["PixelWiseKD"]["student"] == terms["HolisticKD"]["student"] == "segmentation_head.0"


def test_ablations_differ_from_the_full_recipe_only_in_their_terms():
    full = load("seg_pspnet_kd.py")
    rest = {k: v for k, v in full.items() if k != "distill"}
    expect = {"pspnet_r18_pi.py": ["PixelWiseKD"], "pspnet_r18_pi_pa.py": ["PixelWiseKD", "PairWiseKD"],
              "pspnet_r18_pi_pa_ho.py": ["PixelWiseKD", "PairWiseKD", "HolisticKD"], "pspnet_r18_cwd.py": ["CWD"]}
    for name, types in expect.items():
        cfg = load(f"cityscapes/{name}")
        assert {k: v for k, v in cfg.items() if k != "distill"} == rest, name
        assert [t["type"] for t in cfg["distill"]] == types, name
        for t in cfg["distill"]:
            if t["type"] in terms_of(full):
                assert t == terms_of(full)[t["type"]], name
    cwd = load("cityscapes/pspnet_r18_cwd.py")["distill"][0]
    assert (cwd["T"], cwd["weight"], cwd["student"]) == (4.0, 3.0, "segmentation_head.0")
    baseline = load("cityscapes/pspnet_r18_baseline.py")
    assert {k: v for k, v in baseline.items()} == {k: v for k, v in rest.items() if k != "teacher"}
    teacher = load("cityscapes/pspnet_r101_teacher.py")
    assert teacher["model"]["encoder"] == "resnet101" and teacher["data"] == baseline["data"]


def terms_of(cfg):
    return {t["type"]: t for t in cfg["distill"]}


def test_cirkd_setting():
    for name in ["deeplabv3_r101_teacher", "deeplabv3_r18_baseline", "deeplabv3_r18_skd", "deeplabv3_r18_cwd",
                 "deeplabv3_r18_ifvd", "deeplabv3_r18_dist", "deeplabv3_r18_cirkd", "pspnet_r18_baseline",
                 "pspnet_r18_dist", "pspnet_r18_cirkd", "deeplabv3_mbv2_baseline", "deeplabv3_mbv2_skd",
                 "deeplabv3_mbv2_cwd", "deeplabv3_mbv2_ifvd", "deeplabv3_mbv2_cirkd"]:
        cfg = load(f"cityscapes/cirkd/{name}.py")
        assert tuple(cfg["data"]["train"]["crop_size"]) == (512, 1024), name
        assert cfg["data"]["batch_size"] == 16 and cfg["optimizer"]["lr"] == 0.02, name
        # DIST's release keeps its train_kd.py default weight decay 5e-4; CIRKD's scripts use 1e-4
        assert cfg["optimizer"]["weight_decay"] == (5e-4 if "dist" in name else 1e-4), name
        assert cfg["train"]["iters"] == 40000, name
        assert cfg["model"]["arch"] == ("PSPNet" if "pspnet" in name else "DeepLabV3"), name
        assert cfg["model"]["encoder"] == ("resnet101" if "r101" in name else "mobilenet_v2" if "mbv2" in name
                                           else "resnet18"), name
        if "mbv2" in name:  # CIRKD's deeplab_mobile: 128-channel ASPP head, no auxiliary head
            assert cfg["model"]["decoder_channels"] == 128 and cfg["model"]["aux_head"] is False, name
        if cfg.get("distill"):
            assert cfg["teacher"]["model"]["arch"] == "DeepLabV3" and cfg["teacher"]["model"]["encoder"] == "resnet101"
    skd = terms_of(load("cityscapes/cirkd/deeplabv3_r18_skd.py"))
    assert skd["PairWiseKD"]["detach_norm"] is False  # CIRKD's F.normalize differentiates through the norm
    assert skd["PixelWiseKD"]["weight"] == 1.0 and skd["PairWiseKD"]["weight"] == 10.0
    assert tuple(skd["PairWiseKD"]["grid"]) == (512 // 8 // 2, 1024 // 8 // 2)  # 2x2 windows on 1/8 maps
    cwd = load("cityscapes/cirkd/deeplabv3_r18_cwd.py")["distill"]
    assert [(t["type"], t.get("T"), t["weight"]) for t in cwd] == [
        ("PixelWiseKD", 1.0, 1.0), ("CWD", 4.0, 50.0), ("CWD", 4.0, 3.0)]
    ifvd = load("cityscapes/cirkd/deeplabv3_r18_ifvd.py")["distill"]
    assert [(t["type"], t["student"], t["weight"]) for t in ifvd] == [
        ("PixelWiseKD", "segmentation_head.0", 1.0), ("IFVD", "decoder", 20.0)]
    for method in ("skd", "cwd", "ifvd", "cirkd"):  # the MobileNetV2 student gets the ResNet-18 student's terms
        assert load(f"cityscapes/cirkd/deeplabv3_mbv2_{method}.py")["distill"] == \
            load(f"cityscapes/cirkd/deeplabv3_r18_{method}.py")["distill"], method
    for name in ("deeplabv3_r18_cirkd", "pspnet_r18_cirkd", "deeplabv3_mbv2_cirkd"):
        kd, mb, mem = load(f"cityscapes/cirkd/{name}.py")["distill"]
        # train_cirkd.py: --lambda-kd 1, --lambda-minibatch-pixel 1, --lambda-memory-pixel/-region 0.1,
        # --contrast-temperature 0.1, --contrast-kd-temperature 1, memories 20000 / 2000, contrast 4096 / 1024
        assert (kd["type"], kd["weight"], kd["T"]) == ("PixelWiseKD", 1.0, 1.0)
        assert (mb["type"], mb["student"], mb["weight"], mb["T"], mb["group_size"]) == (
            "CIRKDMiniBatch", "decoder", 1.0, 0.1, 2)
        assert (mem["type"], mem["student"], mem["teacher"], mem["weight"], mem["T"], mem["kd_T"]) == (
            "CIRKDMemory", "decoder", "decoder", 0.1, 0.1, 1.0)
        assert (mem["pixel_memory_size"], mem["region_memory_size"], mem["pixel_contrast_size"],
                mem["region_contrast_size"], mem["pixel_weight"], mem["region_weight"]) == (20000, 2000, 4096, 1024,
                                                                                          1.0, 1.0)
    for name in ("deeplabv3_r18_dist", "pspnet_r18_dist"):
        (dist,) = load(f"cityscapes/cirkd/{name}.py")["distill"]
        assert (dist["type"], dist["student"], dist["beta"], dist["gamma"], dist["T"], dist["weight"]) == (
            "DenseDIST", "segmentation_head.0", 1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("name", ["cityscapes/cirkd/deeplabv3_r18_skd.py", "cityscapes/cirkd/deeplabv3_r18_cwd.py",
                                  "cityscapes/cirkd/deeplabv3_r18_ifvd.py", "cityscapes/cirkd/deeplabv3_r18_dist.py",
                                  "cityscapes/cirkd/pspnet_r18_dist.py", "cityscapes/cirkd/deeplabv3_mbv2_skd.py",
                                  "cityscapes/cirkd/deeplabv3_mbv2_cwd.py", "cityscapes/cirkd/deeplabv3_mbv2_ifvd.py",
                                  "cityscapes/pspnet_r18_cwd.py", "cityscapes/demo/student_skd.py"])
def test_distiller_builds_for_the_other_kd_configs(name):
    """Every tap of these configs exists and every term sizes itself on real feature shapes."""
    import torch

    from densekd.distill.distiller import Distiller
    from densekd.engine.builder import build_model, build_task

    torch.manual_seed(0)
    cfg = load(name)
    student, teacher = build_model(cfg["model"]), build_model(cfg["teacher"]["model"])
    probe = torch.randn(2, 3, 64, 128)
    d = Distiller(student, build_task(cfg), [teacher], cfg["distill"], probe=probe, num_classes=19)
    batch = {"image": probe, "target": torch.randint(0, 19, (2, 64, 128))}
    _, losses = d(batch)
    assert {t.name for t in d.terms} <= set(losses)
    assert all(math.isfinite(float(v.detach())) for v in losses.values())


def test_seg_pspnet_kd_smoke_run_through_tools_train(tmp_path):
    wd = tmp_path / "wd"
    proc = subprocess.run(TRAIN + [str(KD), "--synthetic", "--max-iters", "2", "--device", "cpu",
                                   "--work-dir", str(wd), "--cfg-options", *SMALL],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 2 and summary["synthetic"] is True
    assert summary["distill"] == ["PixelWiseKD", "PairWiseKD", "HolisticKD"]
    assert 0.0 <= summary["final"]["mIoU"] <= 100.0 and "pixel_acc" in summary["final"]
    logs = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    step = [x for x in logs if "loss/PixelWiseKD" in x][-1]
    for key in ("loss/seg", "loss/aux", "loss/PixelWiseKD", "loss/PairWiseKD", "loss/HolisticKD"):
        assert math.isfinite(step[key]), key
    assert "teacher" in proc.stdout + proc.stderr  # the missing teacher checkpoint is warned about
    import torch

    ckpt = torch.load(wd / "checkpoints" / "last.pth", weights_only=False)
    assert any("HolisticKD.discriminator." in k for k in ckpt["strategy"]["distill"])
    assert ckpt["strategy"]["d_optimizers"]["HolisticKD"]  # the critic's optimiser state is checkpointed


@pytest.mark.parametrize("name,terms", [("deeplabv3_r18_ifvd", ["PixelWiseKD", "IFVD"]),
                                        ("deeplabv3_r18_dist", ["DenseDIST"])])
def test_cirkd_ifvd_and_dist_smoke_runs_through_tools_train(tmp_path, name, terms):
    wd = tmp_path / "wd"
    proc = subprocess.run(TRAIN + [str(CONFIGS / "cityscapes/cirkd" / f"{name}.py"), "--synthetic", "--max-iters", "2",
                                   "--device", "cpu", "--work-dir", str(wd), "--cfg-options", *SMALL],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 2 and summary["distill"] == terms
    logs = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    step = [x for x in logs if f"loss/{terms[-1]}" in x][-1]
    for term in terms:
        assert math.isfinite(step[f"loss/{term}"]) and step[f"loss/{term}"] > 0, term


@pytest.mark.parametrize("name", ["deeplabv3_r18_cirkd", "pspnet_r18_cirkd", "deeplabv3_mbv2_cirkd"])
def test_cirkd_smoke_runs_through_tools_train_and_checkpoint_the_memories(tmp_path, name):
    wd = tmp_path / "wd"
    small_memory = ["distill.2.pixel_memory_size=64", "distill.2.region_memory_size=16"]
    proc = subprocess.run(TRAIN + [str(CONFIGS / "cityscapes/cirkd" / f"{name}.py"), "--synthetic", "--max-iters", "2",
                                   "--device", "cpu", "--work-dir", str(wd), "--cfg-options", *SMALL, *small_memory],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 2 and summary["distill"] == ["PixelWiseKD", "CIRKDMiniBatch", "CIRKDMemory"]
    logs = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    step = [x for x in logs if "loss/CIRKDMemory" in x][-1]
    for term in summary["distill"]:
        assert math.isfinite(step[f"loss/{term}"]) and step[f"loss/{term}"] > 0, term
    import torch

    state = torch.load(wd / "checkpoints" / "last.pth", weights_only=False)["strategy"]["distill"]
    assert state["losses.CIRKDMemory.teacher_pixel_queue"].shape == (19, 64, 512)
    assert state["losses.CIRKDMemory.teacher_segment_queue"].shape == (19, 16, 512)
    assert int(state["losses.CIRKDMemory.steps"]) == 2 and int(state["losses.CIRKDMemory.segment_queue_ptr"].sum()) > 0


def test_missing_teacher_checkpoint_names_the_command_that_trains_it(tmp_path):
    from densekd.data.cityscapes import SyntheticCityscapes

    data = tmp_path / "cityscapes"
    SyntheticCityscapes.write_tree(str(data), "train", n=2, image_size=(32, 64))
    SyntheticCityscapes.write_tree(str(data), "val", n=2, image_size=(32, 64))
    proc = subprocess.run(TRAIN + [str(KD), "--data-root", str(data), "--device", "cpu",
                                   "--work-dir", str(tmp_path / "wd"), "--cfg-options", "data.num_workers=0"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "python tools/train.py configs/cityscapes/pspnet_r101_teacher.py" in proc.stderr
    assert "work_dirs/cityscapes/pspnet_r101_teacher/checkpoints/best.pth" in proc.stderr


def test_demo_student_runs_differ_only_by_distillation_and_noise_is_training_only():
    teacher, base, skd = (load(f"cityscapes/demo/{n}.py") for n in ("teacher", "student_baseline", "student_skd"))
    for key in ("model", "data", "train", "optimizer", "lr_schedule", "seed"):
        assert skd[key] == base[key], key
    assert not base.get("distill")
    assert teacher["model"]["output_stride"] == 4 and base["model"]["output_stride"] == 8
    assert teacher["train"]["iters"] > base["train"]["iters"]
    assert base["data"]["train"]["label_noise"] == 0.3
    assert base["data"]["val"].get("label_noise", 0.0) == 0.0  # evaluation against exact labels
    assert skd["teacher"]["model"] == teacher["model"]
