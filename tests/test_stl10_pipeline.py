"""STL-10 luminance -> chrominance pipelines (one per table row), CRD's Table 4 transfer probes (pipelines and
probe-only configs), and the tables over seeds that tools/pipeline_table.py prints."""
import json
import statistics
import subprocess
import sys

import pytest
import torch

from densekd.config import load_config
from densekd.engine.trainer import Trainer
from densekd.pipelines import PipelineRunner, load_pipeline
from densekd.pipelines.seeds import CRD_TABLE4_PUBLISHED, TABLES, seed_table
from tests.conftest import ROOT

SHRINK = ["data.batch_size=4", "data.val_batch_size=32", "data.num_workers=0"]
STL10_ROWS = ["random_init", "kd", "at", "fitnet", "crd", "crd_kd"]
TABLE4_ROWS = ["student", "kd", "at", "fitnet", "crd", "crd_kd", "teacher"]
TOOL = [sys.executable, str(ROOT / "tools/pipeline_table.py")]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def set_synthetic_sizes(node, sizes):
    """num_samples=sizes on every SyntheticSTL10 dataset dict inside ``node`` (wrappers included)."""
    if isinstance(node, dict):
        if node.get("type") == "SyntheticSTL10":
            node["num_samples"] = dict(sizes)
        for v in node.values():
            set_synthetic_sizes(v, sizes)


# ------------------------------------------------------------------------------------ STL-10 L -> ab pipelines
@pytest.mark.parametrize("row", STL10_ROWS)
def test_every_stl10_row_has_a_pipeline_whose_stages_validate(row):
    pipe = load_pipeline(ROOT / f"configs/pipelines/stl10_crossmodal/{row}.py", synthetic=True, cli_options=SHRINK)
    assert pipe.names == (["pretrain", "probe", "finetune"] if row == "random_init" else
                          ["teacher", "pretrain", "probe", "finetune"])
    assert str(pipe.work_dir) == f"work_dirs/pipelines/stl10_crossmodal/{row}"
    pre = pipe.stage("pretrain").cfg
    assert pre["task"]["type"] == "representation" and pre["student_input"] == "ab"
    assert pre["model"] == dict(type="wrn_16_2", num_classes=10, in_channels=2)
    inner = pre["data"]["train"].get("dataset", pre["data"]["train"])
    assert inner["type"] == "SyntheticSTL10" and tuple(inner["keys"]) == ("L", "ab")
    if row == "random_init":
        assert "teacher" not in pre and not pre.get("distill") and pre["train"]["epochs"] == 0
    else:
        teacher = pipe.stage("teacher").cfg
        assert teacher["student_input"] == "L" and teacher["model"]["in_channels"] == 1
        assert teacher["data"]["train"]["split"] == "train" and teacher["data"]["val"]["split"] == "test"
        assert pre["teacher"]["input"] == "L" and pre["teacher"]["model"] == teacher["model"]
        assert pre["teacher"]["checkpoint"].endswith(f"{row}/teacher/checkpoints/best.pth")
        assert inner["split"] == "train+unlabeled"
        terms = {"kd": ["KD"], "at": ["AT"], "fitnet": ["FitNet"], "crd": ["CRD"], "crd_kd": ["KD", "CRD"]}[row]
        assert [d["type"] for d in pre["distill"]] == terms
        if "crd" in row:
            assert pre["data"]["train"]["type"] == "CRDSampleDataset"
            assert (pre["data"]["train"]["mode"], pre["data"]["train"]["sampling"]) == ("exact", "any")
            crd = pre["distill"][-1]
            assert crd["student"] == crd["teacher"] == "feats[-1]"
            assert crd["nce_k"] == pre["data"]["train"]["nce_k"]
    probe = pipe.stage("probe")
    assert probe.kind == "probe" and probe.checkpoint_path.endswith(f"{row}/pretrain/checkpoints/last.pth")
    assert probe.cfg["probe"]["layer"] == "feats[-1]" and probe.cfg["student_input"] == "ab"
    assert probe.cfg["data"]["train"]["split"] == "train" and probe.cfg["data"]["val"]["split"] == "test"
    fine = pipe.stage("finetune").cfg
    assert fine["load_from"]["path"].endswith(f"{row}/pretrain/checkpoints/last.pth")
    assert fine["load_from"]["exclude"] == ["fc"] and fine["student_input"] == "ab"
    assert {g["prefix"] for g in fine["optimizer"]["param_groups"]} == {"conv1", "block1", "block2", "block3", "bn1"}
    assert all(g["lr_mult"] == 0.1 for g in fine["optimizer"]["param_groups"])


def test_seed_and_a_pretrained_L_teacher_are_options_of_the_pipeline():
    pipe = load_pipeline(ROOT / "configs/pipelines/stl10_crossmodal/kd.py", synthetic=True, seed=3)
    assert str(pipe.work_dir) == "work_dirs/pipelines/stl10_crossmodal/kd/seed3"
    assert all(s.cfg["seed"] == 3 for s in pipe.stages)
    # the teacher stage starting from another L network (the documented load_from option) validates
    cfg = load_config(ROOT / "configs/stl10/wrn_16_2_L.py", ["load_from=dict(path='/x/L_net.pth', exclude=['fc'])"])
    assert cfg["load_from"]["exclude"] == ["fc"]


def test_crd_row_runs_end_to_end_on_the_synthetic_stand_in(tmp_path):
    """teacher (L, labelled) -> CRD (ab, unlabelled) -> linear probe -> fine-tuning with a new head."""
    work = tmp_path / "stl10_crossmodal" / "crd" / "seed0"
    pipe = load_pipeline(ROOT / "configs/pipelines/stl10_crossmodal/crd.py", synthetic=True, work_dir=str(work),
                         cli_options=SHRINK)
    for stage in pipe.stages:
        set_synthetic_sizes(stage.cfg, {"train": 40, "test": 20, "unlabeled": 24})
    lines = []
    results = PipelineRunner(pipe, device="cpu", synthetic=True, max_iters=2, log=lines.append).run()
    assert [r.status for r in results] == ["trained", "trained", "probed", "trained"]
    pre_cfg = load_config(work / "pretrain/config.py")
    assert pre_cfg["teacher"]["checkpoint"] == str(work / "teacher/checkpoints/best.pth")
    assert len(pipe.stage("pretrain").cfg["data"]["train"]["dataset"]["num_samples"]) == 3  # train+unlabeled: 64
    pre = weights(work / "pretrain/checkpoints/last.pth")
    assert pre["conv1.weight"].shape == (16, 2, 3, 3) and not (work / "pretrain/checkpoints/best.pth").exists()
    probe = json.loads((work / "probe/probe_summary.json").read_text())
    assert probe["layer"] == "feats[-1]" and probe["feature_dim"] == 128 and probe["num_classes"] == 10
    assert probe["split_sizes"]["train"] == 40 and probe["split_sizes"]["val"] == 20
    assert 0 <= probe["final"]["linear_probe_top1"] <= 100 and probe["max_iters"] == 2
    fine = weights(work / "finetune/checkpoints/last.pth")
    assert not torch.equal(fine["conv1.weight"], pre["conv1.weight"])  # the encoder trains (at a tenth of the rate)
    log = (work / "finetune/train.log").read_text()
    assert (f"load_from: loaded 81 tensors from {work / 'pretrain/checkpoints/last.pth'}; kept 2 at their "
            f"initialisation (exclude): fc.weight, fc.bias") in log
    # smoke runs are counted, never averaged, by the table
    text, results = seed_table(TABLES["stl10_crossmodal"], tmp_path / "stl10_crossmodal")
    assert "| CRD | – | – | 0 (+2 incomplete) |" in text


# ------------------------------------------------------------------------------------------------ the tables
def fabricate(root, row, seed, stage, metric, value, probe=False, **extra):
    d = root / row / f"seed{seed}" / stage
    d.mkdir(parents=True, exist_ok=True)
    summary = {"final": {metric: value}, "completed": True, "max_iters": None, **extra}
    (d / ("probe_summary.json" if probe else "summary.json")).write_text(json.dumps(summary))


def test_stl10_table_means_and_stds_over_seeds_by_hand(tmp_path):
    root = tmp_path / "stl10_crossmodal"
    for seed, (p, f) in enumerate([(60.0, 70.0), (62.0, 71.0), (64.5, 75.0)]):
        fabricate(root, "crd", seed, "probe", "linear_probe_top1", p, probe=True)
        fabricate(root, "crd", seed, "finetune", "top1", f)
    fabricate(root, "random_init", 0, "probe", "linear_probe_top1", 40.0, probe=True)
    fabricate(root, "random_init", 1, "probe", "linear_probe_top1", 99.0, probe=True, max_iters=2)  # smoke: counted
    out = subprocess.run(TOOL + ["stl10_crossmodal", str(root), "--out", str(tmp_path / "t.md")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "| method | linear probe top-1 | fine-tune top-1 | seeds |"
    assert lines[2] == "| Random init | 40.00 | – | 1 (+1 incomplete) |"  # the paper's order: random init first
    # by hand: mean 62.1667, sample std sqrt(((-2.1667)^2 + (-0.1667)^2 + 2.3333^2) / 2) = 2.2546
    assert lines[3] == "| CRD | 62.17 ± 2.25 | 72.00 ± 2.65 | 3 |"
    assert abs(statistics.stdev([70.0, 71.0, 75.0]) - 2.6458) < 1e-4
    assert "no published numbers" in out.stdout and "published" not in lines[0]


def test_table4_table_with_the_published_numbers_beside(tmp_path):
    root = tmp_path / "crd_table4"
    for seed, (s, t) in enumerate([(70.0, 34.0), (71.0, 35.0)]):
        fabricate(root, "crd", seed, "probe_stl10", "linear_probe_top1", s, probe=True)
        fabricate(root, "crd", seed, "probe_tinyimagenet", "linear_probe_top1", t, probe=True)
    fabricate(root, "teacher", 0, "probe_stl10", "linear_probe_top1", 66.0, probe=True)
    fabricate(root, "teacher", 0, "teacher", "top1", 75.0)  # other stages are not columns
    text = subprocess.run(TOOL + ["crd_table4", str(root)], capture_output=True, text=True, timeout=120).stdout
    lines = text.splitlines()
    assert lines[0] == ("| method | STL-10 top-1 | TinyImageNet top-1 | seeds | published STL-10 | "
                        "published TinyImageNet |")
    assert lines[2] == "| CRD | 70.50 ± 0.71 | 34.50 ± 0.71 | 2 | 71.6 | 35.6 |"  # std of (70, 71) = 0.7071
    assert lines[3] == "| Teacher (WRN-40-2) | 66.00 | – | 1 | 68.6 | 31.5 |"
    assert "Table 4" in text and "L-BFGS" in text
    assert CRD_TABLE4_PUBLISHED["student"] == (69.7, 33.7) and CRD_TABLE4_PUBLISHED["crd_kd"] == (72.2, 35.5)


# ------------------------------------------------------------------------------------------- CRD Table 4
@pytest.mark.parametrize("row", TABLE4_ROWS)
def test_every_table4_row_has_a_pipeline_whose_stages_validate(row):
    pipe = load_pipeline(ROOT / f"configs/pipelines/crd_table4/{row}.py", synthetic=True, cli_options=SHRINK)
    net = {"student": "student", "teacher": "teacher"}.get(row, "student")
    assert pipe.names[-2:] == ["probe_stl10", "probe_tinyimagenet"]
    assert pipe.names[:-2] == {"student": ["student"], "teacher": ["teacher"]}.get(row, ["teacher", "student"])
    trained = pipe.stage(net).cfg
    assert trained["model"]["type"] == ("wrn_40_2" if row == "teacher" else "wrn_16_2")
    assert trained["data"]["train"].get("dataset", trained["data"]["train"])["type"] == "SyntheticCIFAR100"
    if row not in ("student", "teacher"):
        assert trained["teacher"]["checkpoint"].endswith(f"{row}/teacher/checkpoints/best.pth")
        assert trained["distill"]
    for ds, dataset in (("stl10", "SyntheticSTL10"), ("tinyimagenet", "SyntheticTinyImageNet")):
        probe = pipe.stage(f"probe_{ds}")
        assert probe.kind == "probe" and probe.checkpoint_path.endswith(f"{row}/{net}/checkpoints/best.pth")
        assert probe.cfg["model"] == dict(type=trained["model"]["type"], num_classes=100)
        assert probe.cfg["probe"]["layer"] == "feats[-1]"
        for split in ("train", "val"):
            d = probe.cfg["data"][split]
            assert d["type"] == dataset and d["size"] == 32 and d["mean"][0] == 0.5071  # CIFAR-100's statistics


def test_table4_probe_only_configs_on_a_checkpoint_written_by_the_trainer(tmp_path):
    """A CIFAR-100 WRN-16-2 trained by the real Trainer (synthetic CIFAR-100), probed on the synthetic STL-10 and
    TinyImageNet by tools/linear_probe.py into the table's layout, then the table."""
    cfg = load_config(ROOT / "configs/cifar100/students/wrn_16_2.py",
                      ["data.batch_size=4", "data.num_workers=0", "data.train.num_samples=8", "data.val.num_samples=8"])
    from densekd.engine.builder import use_synthetic

    use_synthetic(cfg)
    Trainer(cfg, tmp_path / "student", device="cpu", synthetic=True, max_iters=1).train()
    ckpt = tmp_path / "student/checkpoints/best.pth"
    root = tmp_path / "crd_table4"
    sizes = {"stl10": ("data.train.num_samples={'train': 60}", "data.val.num_samples={'test': 30}"),
             "tinyimagenet": ("data.train.num_samples=400", "data.val.num_samples=200")}
    summaries = {}
    for ds, (n_train, n_val) in sizes.items():
        wd = root / "student" / "seed0" / f"probe_{ds}"
        out = subprocess.run([sys.executable, str(ROOT / "tools/linear_probe.py"),
                              str(ROOT / f"configs/cifar100/transfer/wrn_16_2_{ds}.py"), str(ckpt), "--synthetic",
                              "--device", "cpu", "--work-dir", str(wd), "--cfg-options", "data.num_workers=0",
                              n_train, n_val, "probe.wd_grid=[1e-3]", "probe.max_iter=50"],
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        summaries[ds] = json.loads((wd / "probe_summary.json").read_text())
        assert summaries[ds]["layer"] == "feats[-1]" and summaries[ds]["feature_dim"] == 128
        assert summaries[ds]["features"]["train"]["shape"] == [60 if ds == "stl10" else 400, 128]
    assert summaries["stl10"]["num_classes"] == 10 and summaries["tinyimagenet"]["num_classes"] == 200
    text, _ = seed_table(TABLES["crd_table4"], root)
    s, t = (summaries[d]["final"]["linear_probe_top1"] for d in ("stl10", "tinyimagenet"))
    assert f"| Student (WRN-16-2) | {s:.2f} | {t:.2f} | 1 | 69.7 | 33.7 |" in text


# ------------------------------------------------------------------------------ real formats via --data-root
def write_official_trees(root):
    """CIFAR-100 pickles, ``stl10_binary`` and ``tiny-imagenet-200`` in their official layouts under ``root``."""
    import numpy as np

    from densekd.data.cifar import write_cifar100_pickles
    from densekd.data.synthetic_stl10 import SyntheticSTL10
    from densekd.data.synthetic_tinyimagenet import SyntheticTinyImageNet

    rng = np.random.default_rng(0)
    write_cifar100_pickles(root / "cifar100", {s: rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
                                               for s in ("train", "test")},
                           {s: list(range(8)) for s in ("train", "test")})
    SyntheticSTL10.write_tree(root / "stl10", num_samples={"train": 20, "test": 10, "unlabeled": 2})
    SyntheticTinyImageNet.write_tree(root / "tinyimagenet", num_samples={"train": 200, "val": 20})
    return {"CIFAR100": root / "cifar100", "STL10": root / "stl10", "TinyImageNet": root / "tinyimagenet"}


def test_table4_row_runs_on_files_in_the_official_formats_with_one_root_per_dataset(tmp_path):
    """tools/pipeline.py on a CRD Table 4 row with --data-root CIFAR100=.. STL10=.. TinyImageNet=..: every stage
    reads its own dataset's files (the probes' split sizes are those written), end to end."""
    import tools.pipeline

    roots = write_official_trees(tmp_path / "data")
    work = tmp_path / "crd_table4" / "kd" / "seed0"
    args = [str(ROOT / "configs/pipelines/crd_table4/kd.py"), "--work-dir", str(work), "--max-iters", "1",
            "--device", "cpu", "--data-root", *[f"{k}={v}" for k, v in roots.items()], "--cfg-options", *SHRINK]
    pipe = load_pipeline(args[0], data_root=args[8:11], cli_options=SHRINK, work_dir=str(work))
    for stage in pipe.stages:
        for split in ("train", "val"):
            d = stage.cfg["data"][split]
            d = d.get("dataset", d)
            assert d["root"] == str(roots[d["type"]])
    results = tools.pipeline.main(args)
    assert [r.status for r in results] == ["trained", "trained", "probed", "probed"]
    sizes = {ds: json.loads((work / f"probe_{ds}/probe_summary.json").read_text())["split_sizes"]
             for ds in ("stl10", "tinyimagenet")}
    assert [(s["train"], s["val"]) for s in sizes.values()] == [(20, 10), (200, 20)]  # the files written above
    teacher = load_config(work / "teacher/config.py")
    assert teacher["data"]["train"]["root"] == str(roots["CIFAR100"])


def test_one_data_root_for_stages_that_read_several_datasets_is_refused_with_the_fix(tmp_path):
    from densekd.pipelines import PipelineError

    with pytest.raises(PipelineError, match=r"from 3 folders .*CIFAR100 \(data/cifar100, teacher, student\); STL10 "
                                            r"\(data/stl10, probe_stl10\).*--data-root CIFAR100=PATH STL10=PATH "
                                            r"TinyImageNet=PATH"):
        load_pipeline(ROOT / "configs/pipelines/crd_table4/kd.py", data_root="data/x", cli_options=SHRINK)
    with pytest.raises(PipelineError, match="no stage of .* reads ImageNet"):
        load_pipeline(ROOT / "configs/pipelines/crd_table4/kd.py", cli_options=SHRINK,
                      data_root=["CIFAR100=a", "STL10=b", "TinyImageNet=c", "imagenet=d"])
    with pytest.raises(PipelineError, match="'CIFAR10' is not a dataset type that reads files; use one of .*CIFAR100"):
        load_pipeline(ROOT / "configs/pipelines/crd_table4/kd.py", cli_options=SHRINK, data_root=["CIFAR10=a"])
    with pytest.raises(PipelineError, match="mixes a plain path with TYPE=PATH"):
        load_pipeline(ROOT / "configs/pipelines/crd_table4/kd.py", cli_options=SHRINK, data_root=["a", "STL10=b"])
    # one dataset for every stage: one plain root still works (the STL-10 cross-modal pipeline)
    pipe = load_pipeline(ROOT / "configs/pipelines/stl10_crossmodal/kd.py", data_root=["/d/stl10"], cli_options=SHRINK)
    assert {d["root"] for s in pipe.stages for d in s.cfg["data"].values() if isinstance(d, dict)} == {"/d/stl10"}
    # a mapping leaves the types it does not name at the config's own root
    pipe = load_pipeline(ROOT / "configs/pipelines/crd_table4/kd.py", data_root=["stl10=/d/s"], cli_options=SHRINK)
    assert pipe.stage("probe_stl10").cfg["data"]["train"]["root"] == "/d/s"
    assert pipe.stage("probe_tinyimagenet").cfg["data"]["train"]["root"] == "data/tinyimagenet"


def test_single_config_data_roots_one_path_or_one_per_type():
    """tools/train.py / linear_probe.py: --data-root PATH sets every real dataset; TYPE=PATH only that type's; a
    type the config does not read is an error naming what it reads."""
    import argparse

    from densekd.config import ConfigError
    from densekd.engine.launch import prepare

    def cfg_with(root):
        return prepare(argparse.Namespace(config=str(ROOT / "configs/cifar100/transfer/wrn_16_2_tinyimagenet.py"),
                                          cfg_options=[], seed=None, data_root=root, synthetic=False))

    assert {d["root"] for d in cfg_with(["/t"])["data"].values() if isinstance(d, dict)} == {"/t"}
    assert cfg_with(["tinyimagenet=/u"])["data"]["val"]["root"] == "/u"
    with pytest.raises(ConfigError, match="names STL10 but the config reads TinyImageNet"):
        cfg_with(["STL10=/s"])
