"""ImageNet recipes (CRD Table 3, ResNet-34 -> ResNet-18): composed from the shared method bases with CRD's schedule,
each one trained for two iterations on the stand-in at 64 x 64, torchvision's teacher file as the checkpoint, the
stage taps of ResNet-18 / -34, the loader options and the benchmark's ImageNet case."""
import copy
import json
import subprocess
import sys

import pytest
import torch
import torchvision

from densekd.config import ConfigError, load_config
from densekd.data.sampling import build_loader
from densekd.distill.taps import FeatureTaps, expand_taps
from densekd.engine.builder import build_teachers, use_synthetic
from densekd.engine.schema import validate
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, MODELS
from tests.conftest import ROOT

PAIR = ROOT / "configs/imagenet/distill/resnet34-resnet18"
RECIPES = sorted(p.stem for p in PAIR.glob("*.py"))
CIFAR_METHODS = ROOT / "configs/_base_/cifar100/methods"


def test_the_table3_recipes_reuse_the_method_bases_with_crds_schedule():
    assert RECIPES == ["at", "cc", "crd", "crd_kd", "dist", "dkd", "kd", "sp"]
    for method in RECIPES:
        cfg = load_config(PAIR / f"{method}.py")
        validate(cfg)
        assert cfg["model"] == dict(type="tv_resnet18", num_classes=1000)
        assert cfg["teacher"]["model"]["type"] == "tv_resnet34"
        assert cfg["teacher"]["checkpoint"].endswith("resnet34-b627a593.pth")
        assert cfg["optimizer"] == dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)
        assert cfg["lr_schedule"]["milestones"] == [30, 60, 90] and cfg["lr_schedule"]["gamma"] == 0.1
        assert cfg["train"]["epochs"] == 100 and cfg["data"]["batch_size"] == 256
        if method not in ("dkd", "dist"):  # the same terms as the CIFAR recipe, composed, not copied
            base = load_config(CIFAR_METHODS / f"{method}.py")
            assert cfg["distill"] == base["distill"] and cfg.get("task_weight") == base.get("task_weight")
            assert any("cifar100/methods" in str(v) for v in cfg.sources.values())
    crd = load_config(PAIR / "crd.py")["data"]["train"]
    assert crd["type"] == "CRDSampleDataset" and crd["nce_k"] == 16384 and crd["dataset"]["type"] == "ImageNet"
    assert load_config(PAIR / "dkd.py")["distill"] == [dict(type="DKD", alpha=1.0, beta=0.5, T=1.0, warmup=1,
                                                            weight=1)]
    dist = load_config(PAIR / "dist.py")
    assert dist["distill"] == [dict(type="DIST", beta=1.0, gamma=1.0, T=1.0, weight=1.0)] and dist["task_weight"] == 1
    data = load_config(ROOT / "configs/imagenet/students/resnet18.py")["data"]
    assert data["persistent_workers"] and data["prefetch_factor"] == 4 and data["num_workers"] == 16
    assert data["val"]["split"] == "val" and data["train"]["size"] == data["val"]["size"] == 224


def tiny(cfg, decode="pil"):
    """The stand-in at 64 x 64: 16 training and 8 validation images of 4 classes, batch 4, CRD with 8 negatives."""
    use_synthetic(cfg)
    data = cfg["data"]
    data.update(batch_size=4, val_batch_size=8, num_workers=0)
    train = data["train"]["dataset"] if data["train"]["type"] == "CRDSampleDataset" else data["train"]
    if data["train"]["type"] == "CRDSampleDataset":
        data["train"]["nce_k"] = 8
    for ds, n in ((train, 16), (data["val"], 8)):
        ds.update(size=64, num_samples=n, num_classes=4, decode=decode)
    for term in cfg.get("distill") or []:
        if term["type"] == "CRD":
            term["nce_k"] = 8
    return cfg


@pytest.mark.parametrize("recipe", [f"distill/resnet34-resnet18/{m}" for m in RECIPES] +
                         ["students/resnet18", "teachers/resnet34"])
def test_every_recipe_trains_two_iterations_on_the_stand_in(recipe, tmp_path):
    cfg = tiny(load_config(ROOT / f"configs/imagenet/{recipe}.py"))
    trainer = Trainer(cfg, tmp_path / "run", device="cpu", synthetic=True, max_iters=2)
    teachers = trainer.strategy.distiller.teachers if cfg.get("teacher") else []
    before = [copy.deepcopy(t.state_dict()) for t in teachers]
    summary = trainer.train()
    assert summary["iters"] == 2 and not summary["completed"] and summary["synthetic"]
    assert 0 <= summary["final"]["top1"] <= summary["final"]["top5"] <= 100
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(v)) for r in losses for k, v in r.items() if "loss" in k)
    for term in summary.get("distill", []):
        assert any(f"loss/{term}" in r for r in losses)
    for t, state in zip(teachers, before):
        assert all(torch.equal(v, state[k]) for k, v in t.state_dict().items())


def test_crd_recipe_through_train_py_with_device_decoding(tmp_path):
    options = ["data.batch_size=4", "data.val_batch_size=8", "data.num_workers=1", "data.train.nce_k=8",
               "distill.0.nce_k=8", "distill.0.memory_dtype=float16"]
    for where, n in (("data.train.dataset", 16), ("data.val", 8)):
        options += [f"{where}.size=64", f"{where}.num_samples={n}", f"{where}.num_classes=4", f"{where}.decode=device"]
    out = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), str(PAIR / "crd.py"), "--synthetic",
                          "--max-iters", "2", "--device", "cpu", "--work-dir", str(tmp_path / "crd"),
                          "--cfg-options", *options], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "crd" / "summary.json").read_text())
    assert summary["iters"] == 2 and "CRD" in summary["distill"]
    assert "resnet34-b627a593.pth" in out.stdout + out.stderr  # the missing teacher file is named (a warning)
    ckpt = torch.load(tmp_path / "crd" / "checkpoints" / "last.pth", weights_only=False)
    banks = dict(tensors(ckpt["strategy"]))
    memory = [v for k, v in banks.items() if k.endswith("memory_s") or k.endswith("memory_t")]
    assert len(memory) == 2 and all(m.dtype == torch.float16 and m.shape == (16, 128) for m in memory)


def tensors(node, prefix=""):
    """(dotted key, tensor) of every tensor in a nested checkpoint entry."""
    if isinstance(node, torch.Tensor):
        yield prefix, node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from tensors(v, f"{prefix}.{k}" if prefix else str(k))


def test_a_torchvision_file_is_the_teacher_checkpoint_without_renaming(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet34(weights=None).eval()
    path = tmp_path / "resnet34-b627a593.pth"
    torch.save(reference.state_dict(), path)
    cfg = load_config(PAIR / "kd.py", [f"teacher.checkpoint={str(path)!r}"])
    teachers, inputs, untrained = build_teachers(cfg, synthetic=False)
    assert inputs == ["image"] and untrained == [False]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(teachers[0](x), reference(x), atol=1e-5)
    missing = load_config(PAIR / "kd.py", [f"teacher.checkpoint={str(tmp_path / 'nope.pth')!r}"])
    with pytest.raises(FileNotFoundError, match=r"tv_resnet34.*torchvision's resnet34 ImageNet weights, the file "
                                                 r"resnet34-b627a593.pth"):
        build_teachers(missing, synthetic=False)


def test_resnet18_and_resnet34_taps_match_for_at_sp_cc_crd():
    shapes = {}
    for arch in ("tv_resnet18", "tv_resnet34"):
        model = MODELS.build(dict(type=arch)).eval()
        paths = {name: expand_taps(model, tap) for name, tap in
                 (("AT", "feats[1:-1]"), ("SP", "feats[-2]"), ("CRD", "feats[-1]"))}
        every = sorted({p for ps in paths.values() for p in ps})
        with FeatureTaps(model, every) as taps, torch.no_grad():
            model(torch.randn(2, 3, 64, 64))
            got = dict(zip(every, taps.collect(every)))
        shapes[arch] = {name: [tuple(got[p].shape) for p in ps] for name, ps in paths.items()}
        assert paths["AT"] == ["layer1", "layer2", "layer3", "layer4"] and paths["CRD"] == ["fc:input"]
    assert shapes["tv_resnet18"] == shapes["tv_resnet34"]
    assert shapes["tv_resnet18"]["AT"] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    assert shapes["tv_resnet18"]["CRD"] == [(2, 512)]


def test_loader_options_persistent_workers_and_prefetch():
    ds = DATASETS.build(dict(type="SyntheticImageNet", split="val", size=16, num_samples=6))
    loader = build_loader(ds, 2, shuffle=False, seed=0, num_workers=1, persistent_workers=True, prefetch_factor=3)
    assert loader.persistent_workers and loader.prefetch_factor == 3
    assert [b["image"].shape[0] for b in loader] == [2, 2, 2] and [b["image"].shape[0] for b in loader] == [2] * 3
    plain = build_loader(ds, 2, shuffle=False, seed=0, num_workers=0, persistent_workers=True, prefetch_factor=3)
    assert plain.num_workers == 0 and not plain.persistent_workers  # the options need workers
    with pytest.raises(ValueError, match="prefetch_factor must be >= 1"):
        build_loader(ds, 2, shuffle=False, seed=0, num_workers=1, prefetch_factor=0)
    cfg = load_config(ROOT / "configs/imagenet/students/resnet18.py", ["data.prefetchfactor=2"])
    with pytest.raises(ConfigError, match="prefetch_factor"):
        validate(cfg)


def test_the_benchmark_imagenet_case_reports_loader_and_step_rates(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), "imagenet", "--synthetic", "--quick",
                          "--device", "cpu", "--out", str(tmp_path / "b.json"), "--cfg-options", "data.batch_size=4",
                          "data.num_workers=1", "data.train.size=64", "data.val.size=64"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["case"] == "imagenet" and result["distill"] == ["KD"] and result["iters_timed"] == 3
    for key in ("loader_images_per_second", "step_images_per_second", "images_per_second"):
        assert result[key] > 0
    assert result["bound_by"] in ("data loading", "compute")
    assert result["bound_by"] == ("data loading" if result["loader_seconds_per_batch"] >
                                  result["step_seconds_per_iter"] else "compute")
    assert any("375 x 500" in n for n in result["notes"])
