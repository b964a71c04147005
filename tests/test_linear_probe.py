"""Linear probing: the classifiers and the weight-decay sweep on synthetic features, the feature cache, the
errors, tools/linear_probe.py end to end on a checkpoint written by the Trainer (classification and dense), and
the pipelines' probe stage."""
import importlib.util
import json

import numpy as np
import pytest
import torch
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.data.cifar import CIFAR100_MEAN, CIFAR100_STD, SyntheticCIFAR100
from densekd.engine.schema import SECTIONS, validate
from densekd.engine.trainer import Trainer
from densekd.probe import ProbeSettings, probe_dense, probe_global
from densekd.probe.linear import fit_logistic, stratified_holdout, topk_percent
from densekd.registry import DATASETS, MODELS
from tests.conftest import ROOT, TINY_CIFAR, write_config


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(argv, capsys):
    """``tools/linear_probe.py`` in this process: ``(exit code, stdout, stderr)``."""
    capsys.readouterr()
    try:
        load_tool("linear_probe").main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- the classifiers on synthetic features ------------------------------------------------------------------
def blobs(n_per_class, k=10, d=16, spread=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=torch.Generator().manual_seed(123)) * spread
    y = torch.arange(k).repeat_interleave(n_per_class)
    return centres[y] + torch.randn(len(y), d, generator=g), y


def test_separable_blobs_are_classified_almost_perfectly():
    (xtr, ytr), (xte, yte) = blobs(30), blobs(20, seed=1)
    result = probe_global(xtr, ytr, xte, yte, 10, [1e-4, 1e-2, 1.0])
    assert result["metrics"]["top1"] >= 99.0 and result["metrics"]["top5"] == 100.0
    assert [r["wd"] for r in result["sweep"]] == [1e-4, 1e-2, 1.0] and result["wd"] in (1e-4, 1e-2, 1.0)
    assert result["n_fit"] + result["n_heldout"] == 300 and result["n_heldout"] == 30  # 10% of each class


def test_random_labels_stay_at_chance():
    g = torch.Generator().manual_seed(0)
    xtr, ytr = torch.randn(1000, 32, generator=g), torch.randint(0, 10, (1000,), generator=g)
    xte, yte = torch.randn(2000, 32, generator=g), torch.randint(0, 10, (2000,), generator=g)
    result = probe_global(xtr, ytr, xte, yte, 10, [1e-4, 1e-2, 1.0])
    assert abs(result["metrics"]["top1"] - 10.0) < 3.5  # chance 1/10 (sd 0.7 points on 2000 samples)
    assert result["train_top1"] > 15.0  # it did fit the training noise


def test_the_sweep_regularises_an_overfitting_probe_and_not_a_well_posed_one():
    # more dimensions than samples, class means in every direction: small wd interpolates the noise
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(5, 100, generator=g) * 0.35

    def data(n):
        y = torch.arange(n) % 5
        return mu[y] + torch.randn(n, 100, generator=g), y

    (xtr, ytr), (xte, yte) = data(60), data(2000)
    grid = [1e-6, 1e-4, 1e-2, 1e-1, 1.0, 10.0]
    result = probe_global(xtr, ytr, xte, yte, 5, grid, heldout=0.3)
    unregularised = topk_percent(fit_logistic(xtr, ytr, 5, 1e-6).scores(xte), yte, 5)["top1"]
    assert result["wd"] >= 1.0 and result["metrics"]["top1"] > unregularised + 4
    # a shared nuisance direction that only a well-fitted classifier subtracts: strong wd fails
    mu = torch.randn(4, 8, generator=g) * 0.3

    def nuisance(n):
        y = torch.arange(n) % 4
        return mu[y] + 5 * torch.randn(n, 1, generator=g) + 0.1 * torch.randn(n, 8, generator=g), y

    (xtr, ytr), (xte, yte) = nuisance(400), nuisance(1000)
    result = probe_global(xtr, ytr, xte, yte, 4, grid)
    strong = topk_percent(fit_logistic(xtr, ytr, 4, 10.0).scores(xte), yte, 4)["top1"]
    assert result["wd"] <= 1e-2 and result["metrics"]["top1"] > 95 and strong < 50
    rows = {r["wd"]: r["heldout_top1"] for r in result["sweep"]}
    assert rows[result["wd"]] == max(rows.values())


def test_stratified_holdout_is_seeded_and_keeps_every_class():
    labels = np.repeat(np.arange(5), [10, 20, 1, 2, 30])
    fit, held = stratified_holdout(labels, 0.1, seed=3)
    assert sorted(np.concatenate([fit, held]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[held], minlength=5).tolist() == [1, 2, 0, 1, 3]
    assert np.array_equal(held, stratified_holdout(labels, 0.1, seed=3)[1])
    assert not np.array_equal(held, stratified_holdout(labels, 0.1, seed=4)[1])


def test_dense_head_reads_per_pixel_labels_at_label_resolution():
    rng = np.random.default_rng(0)
    k, n = 4, 24
    coarse = rng.integers(0, k, size=(n, 8, 8))
    feats = np.eye(k, dtype=np.float32)[coarse].transpose(0, 3, 1, 2) + 0.1 * rng.standard_normal((n, k, 8, 8))
    labels = coarse.repeat(2, 1).repeat(2, 2).astype(np.int16)  # 16 x 16 maps: the head is upsampled to them
    labels[:, :2] = 255  # ignored rows
    result = probe_dense(feats[:16], labels[:16], feats[16:], labels[16:], k, [1e-4, 1e-3], epochs=20, lr=0.5,
                         batch_size=4)
    assert result["metrics"]["pixel_acc"] > 90 and result["metrics"]["mIoU"] > 80
    noise = rng.standard_normal(feats.shape).astype(np.float32)
    chance = probe_dense(noise[:16], labels[:16], noise[16:], labels[16:], k, [1e-4], epochs=5, batch_size=4)
    assert chance["metrics"]["mIoU"] < 40 and chance["sweep"] == [] and chance["selected_by"].startswith("the only")


def test_an_interrupted_extraction_leaves_no_entry_and_is_redone(tmp_path):
    from densekd.probe import FeatureCache
    from densekd.probe.features import _NpyWriter

    cache = FeatureCache(tmp_path / "features")
    parts = {"tap": "layer3", "dataset": {"type": "X"}}

    def broken(folder):
        folder.mkdir(parents=True, exist_ok=True)
        writer = _NpyWriter(folder / "features.npy", np.float32, (4, 2))
        writer.array[:2] = 1.0
        writer.discard()  # what extract() does when the loader fails half-way
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_extract("train", parts, broken)
    entry = cache.entry("train", parts)
    assert list(entry.iterdir()) == []  # no final file, no temporary file, no meta.json

    def complete(folder):
        for name, shape in (("features", (4, 2)), ("labels", (4,))):
            writer = _NpyWriter(folder / f"{name}.npy", np.float32 if name == "features" else np.int64, shape)
            writer.array[:] = 1
            writer.finish()
        return {"features": [4, 2], "labels": [4]}

    first = cache.get_or_extract("train", parts, complete)
    assert not first["reused"] and (entry / "meta.json").is_file()
    assert cache.get_or_extract("train", parts, broken)["reused"]  # complete: never extracted again
    (entry / "meta.json").unlink()  # an entry without meta.json is not trusted
    assert not cache.get_or_extract("train", parts, complete)["reused"]
    assert cache.entry("val", parts) != entry and cache.entry("train", dict(parts, tap="layer2")) != entry


# -- end to end: tools/linear_probe.py ---------------------------------------------------------------------------
@MODELS.register("_PrototypeNet")
class PrototypeNet(nn.Module):
    """Test-only: ``embed`` correlates the image with SyntheticCIFAR100's class prototypes, so its features carry
    the label; ``fc`` is a classifier on top (untrained)."""

    def __init__(self, num_classes: int = 100):
        super().__init__()
        protos = torch.from_numpy(SyntheticCIFAR100(split="train", num_samples=1).prototypes).float() / 255
        protos = (protos - torch.tensor(CIFAR100_MEAN)) / torch.tensor(CIFAR100_STD)
        protos = protos.permute(0, 3, 1, 2).flatten(1)
        self.embed = nn.Linear(protos.shape[1], 100, bias=False)
        self.embed.weight.data.copy_(protos - protos.mean(0))
        self.fc = nn.Linear(100, num_classes)

    def forward(self, x):
        return self.fc(self.embed(x.flatten(1)))


@DATASETS.register("_UnlabelledCIFAR")
class UnlabelledCIFAR(SyntheticCIFAR100):
    """Test-only: a CIFAR-shaped split whose samples are unlabelled (target -1, as STL-10's unlabeled split)."""

    def __getitem__(self, index):
        return dict(super().__getitem__(index), target=-1)


PROTO = """
model = dict(type='_PrototypeNet', num_classes=100)
optimizer = dict(lr=0.0)
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Checkpoints written by the Trainer: a prototype net (lr 0: its tap reveals the label) and a tiny CNN."""
    tmp = tmp_path_factory.mktemp("probe")
    text = TINY_CIFAR.format(root=ROOT, norm="bn", n_train=500, n_val=100, batch=100, epochs=1)
    proto = write_config(tmp / "proto.py", text + PROTO)
    Trainer(load_config(proto), tmp / "proto", device="cpu", synthetic=True).train()
    cnn = write_config(tmp / "cnn.py", text.replace("epochs=1", "epochs=2"))
    Trainer(load_config(cnn), tmp / "cnn", device="cpu", synthetic=True).train()
    return {"proto": (proto, tmp / "proto/checkpoints/best.pth"), "cnn": (cnn, tmp / "cnn/checkpoints/best.pth"),
            "tmp": tmp}


def test_cli_probes_a_tap_that_carries_the_labels_and_reuses_its_cache(trained, tmp_path, capsys, monkeypatch):
    cfg, ckpt = trained["proto"]
    work = tmp_path / "probe"
    code, out, err = cli([cfg, ckpt, "--layer", "embed", "--work-dir", work, "--device", "cpu",
                          "--cfg-options", "probe.wd_grid=[1e-4,1e-2,1.0]"], capsys)
    assert code == 0, err
    summary = json.loads((work / "probe_summary.json").read_text())
    assert summary["metrics"]["linear_probe_top1"] > 90 and summary["metrics"]["linear_probe_top5"] > 95
    assert summary["primary_metric"] == "linear_probe_top1" and summary["mode"] == "global"
    assert summary["feature_dim"] == 100 and summary["num_classes"] == 100 and summary["tap"] == "embed"
    assert summary["wd"] in (1e-4, 1e-2, 1.0) and [r["wd"] for r in summary["sweep"]] == [1e-4, 1e-2, 1.0]
    assert summary["features"]["train"]["shape"] == [500, 100] and summary["features"]["val"]["shape"] == [100, 100]
    assert not summary["features"]["train"]["reused"] and summary["timings_s"]["extract_train"] > 0
    assert {"extract_train", "extract_val", "sweep", "final", "total"} <= set(summary["timings_s"])
    md = (work / "probe_summary.md").read_text()
    assert "| embed | global | 100 | 100 |" in md and "chosen" in md and md in out
    assert "extracted features [500, 100]" in (work / "probe.log").read_text()
    # the second run (another grid) reads the cache: nothing is extracted
    import densekd.probe.runner as runner

    monkeypatch.setattr(runner, "extract", lambda *a, **k: pytest.fail("features extracted again"))
    code, _, err = cli([cfg, ckpt, "--layer", "embed", "--work-dir", work, "--device", "cpu",
                        "--cfg-options", "probe.wd_grid=[1e-3]"], capsys)
    assert code == 0, err
    again = json.loads((work / "probe_summary.json").read_text())
    assert again["features"]["train"]["reused"] and again["features"]["val"]["reused"]
    assert again["features"]["train"]["cache"] == summary["features"]["train"]["cache"]
    assert again["wd"] == 1e-3 and again["sweep"] == [] and again["timings_s"]["extract_train"] == 0.0
    # another tap, or other weights, is another cache entry
    monkeypatch.undo()
    other = tmp_path / "other.pth"
    state = torch.load(ckpt, weights_only=False)
    state["model"]["fc.bias"] += 1
    torch.save(state, other)
    code, _, err = cli([cfg, other, "--layer", "embed", "--work-dir", work, "--device", "cpu",
                        "--cfg-options", "probe.wd_grid=[1e-3]"], capsys)
    third = json.loads((work / "probe_summary.json").read_text())
    assert code == 0 and not third["features"]["train"]["reused"]
    assert third["features"]["train"]["cache"] != summary["features"]["train"]["cache"]
    assert len(list((work / "features").iterdir())) == 4


def test_cli_on_a_trained_cnn_with_the_default_work_dir_and_the_config_section(trained, capsys, monkeypatch):
    cfg, ckpt = trained["cnn"]
    monkeypatch.chdir(trained["tmp"])
    code, _, err = cli([cfg, ckpt, "--device", "cpu", "--cfg-options", "probe.layer='feats[-1]'",
                        "probe.max_iter=50"], capsys)
    assert code == 0, err
    work = ckpt.parent.parent / "linear_probe" / "feats-1"  # beside the run that wrote the checkpoint
    summary = json.loads((work / "probe_summary.json").read_text())
    assert summary["tap"] == "fc:input" and summary["feature_dim"] == 32 and len(summary["sweep"]) == 7
    assert summary["metrics"]["linear_probe_top1"] > 10  # chance is 1
    assert (work / "features").is_dir()


def test_cli_errors_are_one_line(trained, tmp_path, capsys):
    cfg, ckpt = trained["cnn"]
    base = ["--work-dir", tmp_path / "w", "--device", "cpu"]
    cases = [
        ([cfg, ckpt, "--layer", "layr3"], "unknown tap 'layr3' for SimpleCNN. Closest: layer3"),
        ([cfg, ckpt, "--layer", "feat[-1]"], "Closest: feats[-1]"),
        ([cfg, ckpt, "--layer", "feats[1:3]"], "names 2 taps (layer1, layer2); a probe reads one"),
        ([cfg, ckpt], "the probe needs a tap: give --layer TAP"),
        ([cfg, tmp_path / "missing.pth", "--layer", "layer3"], "checkpoint not found"),
        ([cfg, ckpt, "--layer", "layer3", "--cfg-options", "probe.target='label'"],
         "has no labels: its samples have no 'label' (they have ['image', 'target', 'view'])"),
        ([cfg, ckpt, "--layer", "layer3", "--cfg-options", "probe.data.train=dict(type='_UnlabelledCIFAR', "
          "split='train', num_samples=8)"], "is unlabelled (its first 'target' is -1)"),
        ([cfg, ckpt, "--layer", "layer3", "--mode", "dense"], "probe.mode='dense' needs label maps"),
        ([cfg, ckpt, "--layer", "layer3", "--cfg-options", "probe.wd=1"], "Unknown config key 'probe.wd'"),
    ]
    empty = tmp_path / "empty.pth"
    torch.save({"iter": 3, "rng": None}, empty)
    cases.append(([cfg, empty, "--layer", "layer3"], "holds no model weights (a dict with keys ['iter', 'rng']"))
    for argv, expect in cases:
        code, _, err = cli(argv + base, capsys)
        line = error_line(err)
        assert code == 2 and expect in line, (argv, line)


def test_dense_probe_on_synthetic_rooms(tmp_path, capsys):
    text = """
_base_ = ['{root}/configs/_base_/default_runtime.py', '{root}/configs/_base_/datasets/nyu_seg40.py']
model = dict(type='simple_cnn', num_classes=40, width=8)
data = dict(train=dict(num_samples=10), val=dict(num_samples=4, split='test'), batch_size=4, val_batch_size=4,
            num_workers=0)
probe = dict(layer='layer2', dense_epochs=2, wd_grid=[1e-4, 1e-3], heldout=0.2)
""".format(root=ROOT)
    cfg = write_config(tmp_path / "seg.py", text)
    model = MODELS.build(dict(type="simple_cnn", num_classes=40, width=8))
    torch.save({"model": model.state_dict()}, tmp_path / "seg.pth")
    code, _, err = cli([cfg, tmp_path / "seg.pth", "--synthetic", "--work-dir", tmp_path / "w", "--device", "cpu"],
                       capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "w/probe_summary.json").read_text())
    assert summary["mode"] == "dense" and summary["primary_metric"] == "linear_probe_miou"
    assert set(summary["metrics"]) == {"linear_probe_miou", "linear_probe_pixel_acc", "linear_probe_mean_acc"}
    assert summary["features"]["train"]["shape"] == [10, 16, 48, 64]  # stride 2 of the 96 x 128 frames
    assert summary["features"]["train"]["labels_shape"] == [10, 96, 128] and summary["num_classes"] == 40
    assert summary["split_sizes"] == {"train": 10, "val": 4, "fit": 8, "heldout": 2}
    assert 0 <= summary["metrics"]["linear_probe_miou"] <= 100 and len(summary["sweep"]) == 2
    labels = np.load(summary["features"]["train"]["cache"] + "/labels.npy")
    assert labels.dtype == np.int16 and set(np.unique(labels)) <= set(range(40)) | {255}
    # a depth target is no class label
    code, _, err = cli([cfg, tmp_path / "seg.pth", "--synthetic", "--work-dir", tmp_path / "w", "--device", "cpu",
                        "--cfg-options", "data.train.target='depth'"], capsys)
    assert code == 2 and "is a float map (1, 96, 128)" in error_line(err)


def test_probe_section_is_validated(tiny_config):
    from densekd.engine.resume import is_safe

    assert SECTIONS["probe"] == {f for f in ProbeSettings.__dataclass_fields__}
    assert is_safe("probe.layer") and is_safe("probe") and not is_safe("probes.x")  # training ignores it
    with pytest.raises(ConfigError, match="probe.layr.*Did you mean 'layer'"):
        validate(load_config(tiny_config(), ["probe.layr='x'"]))
    with pytest.raises(ConfigError, match="probe.mode .*must be 'auto', 'global'"):
        validate(load_config(tiny_config(), ["probe.mode='pixel'"]))
    with pytest.raises(ConfigError, match="probe.data.train.num_sample"):
        validate(load_config(tiny_config(), ["probe.data.train=dict(type='SyntheticCIFAR100', num_sample=3)"]))
    with pytest.raises(ConfigError, match="probe.wd_grid must be a non-empty list"):
        ProbeSettings.from_config(load_config(tiny_config(), ["probe.wd_grid=[]"]))
    with pytest.raises(ConfigError, match="probe.heldout takes a number; got 'ten'"):
        ProbeSettings.from_config(load_config(tiny_config(), ["probe.heldout=ten"]))
    with pytest.raises(ConfigError, match="probe.dense_epochs takes a whole number; got 2.5"):
        ProbeSettings.from_config(load_config(tiny_config(), ["probe.dense_epochs=2.5"]))


# -- pipelines: distil -> probe ----------------------------------------------------------------------------------
PIPE = """
stages = [
    dict(name='distil', config='{cfg}'),
    dict(name='probe', kind='probe', config='{cfg}', checkpoint='{{distil.best}}',
         cfg_options={{'probe.layer': 'feats[-1]', 'probe.max_iter': 30}}),
]
"""


def test_pipeline_probe_stage_probes_the_earlier_stages_checkpoint(tiny_config, tmp_path):
    from densekd.pipelines import PipelineError, PipelineRunner, load_pipeline

    cfg = tiny_config(epochs=1)
    path = tmp_path / "pipe.py"
    path.write_text(PIPE.format(cfg=cfg))
    pipe = load_pipeline(path, work_dir=str(tmp_path / "work"))
    assert pipe.stage("probe").checkpoint_path == str(tmp_path / "work/distil/checkpoints/best.pth")
    lines = []
    results = PipelineRunner(pipe, device="cpu", log=lines.append).run()
    assert [(r.name, r.status) for r in results] == [("distil", "trained"), ("probe", "probed")]
    summary = json.loads((tmp_path / "work/probe/probe_summary.json").read_text())
    assert summary["checkpoint"] == pipe.stage("probe").checkpoint_path and summary["layer"] == "feats[-1]"
    row = json.loads((tmp_path / "work/pipeline.json").read_text())["stages"][1]
    assert row["primary_metric"] == "linear_probe_top1" and row["final"] == summary["metrics"]["linear_probe_top1"]
    assert any("stage 'probe' probed: linear_probe_top1 final" in line for line in lines)
    results = PipelineRunner(load_pipeline(path, work_dir=str(tmp_path / "work")), device="cpu",
                             log=lines.append).run()
    assert [r.status for r in results] == ["skipped", "skipped"]
    # start-up checks: the tap, the checkpoint, references to a probe stage
    for text, expect in [
        (PIPE.replace("feats[-1]", "layr3"), "unknown tap 'layr3'"),
        (PIPE.replace("checkpoint='{{distil.best}}',", ""), "a probe stage needs checkpoint="),
        (PIPE.replace("kind='probe'", "kind='prob'"), "kind must be one of 'train', 'probe'"),
        (PIPE.replace("]\n", "    dict(name='x', config='{cfg}', cfg_options={{'load_from': '{{probe.best}}'}}),\n]\n"),
         "stage 'probe' is a probe stage, which writes no checkpoints"),
    ]:
        path.write_text(text.format(cfg=cfg))
        with pytest.raises(PipelineError, match=expect.replace("(", r"\(").replace("[", r"\[")):
            load_pipeline(path, work_dir=str(tmp_path / "w2"))


def test_shipped_distil_probe_finetune_pipeline_loads():
    from densekd.pipelines import load_pipeline

    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_crd_linear_probe.py", synthetic=True)
    probe, fine = pipe.stage("probe"), pipe.stage("finetune")
    assert probe.kind == "probe" and probe.checkpoint_path.endswith("crd/checkpoints/best.pth")
    assert fine.cfg["load_from"] == {"path": probe.checkpoint_path, "exclude": ["fc"]}
    assert fine.cfg["optimizer"]["param_groups"][0] == {"prefix": "conv1", "lr_mult": 0.1}
