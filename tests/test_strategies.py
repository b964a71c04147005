"""The strategy layer: selection and validation, the mutual-learning strategy (two students with their own
metrics and exact resume), the trainer's Step mechanics, and the builders strategies share."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.engine.builder import build_val_loader
from densekd.engine.schema import validate
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, STRATEGIES, TASKS
from densekd.strategies.mutual import Cohort

DML = ("strategy = dict(type='mutual_learning', peers=[dict(type='simple_cnn', num_classes=100, width=4)], "
       "peer_loss=dict(type='KD', T=1.0), weight=1.0)\n")


def run(cfg_path, work_dir, overrides=(), **kw):
    return Trainer(load_config(cfg_path, list(overrides)), work_dir, device="cpu", synthetic=True, **kw).train()


def ckpt(work_dir, name="last.pth"):
    return torch.load(work_dir / "checkpoints" / name, weights_only=False)


def test_strategy_section_is_validated(tiny_config):
    assert {"distillation", "mutual_learning"} <= set(STRATEGIES.names())
    with pytest.raises(ConfigError, match="Unknown strategy type 'mutual_learnin'.*Did you mean 'mutual_learning'"):
        validate(load_config(tiny_config(extra="strategy = dict(type='mutual_learnin')\n")))
    with pytest.raises(ConfigError, match="strategy.init_epoch.*Did you mean 'init_epochs'"):
        validate(load_config(tiny_config(extra="strategy = dict(init_epoch=3)\n")))
    validate(load_config(tiny_config(extra="strategy = dict(init_epochs=3)\n")))  # adjusts the default strategy
    with pytest.raises(ConfigError, match="train.init_epochs.*has moved: set strategy.init_epochs"):
        validate(load_config(tiny_config(extra="train = dict(init_epochs=3)\n")))


def test_mutual_learning_trains_two_students_with_their_own_metrics(tiny_config, tmp_path):
    wd = tmp_path / "dml"
    summary = run(tiny_config(epochs=1, extra=DML), wd)
    assert set(summary["models"]) == {"student", "peer1"} and summary["strategy"] == "mutual_learning"
    for name in ("student", "peer1"):
        assert {"top1", "top5"} <= set(summary["models"][name]["final"])
        assert summary["models"][name]["best"]["top1"] >= summary["models"][name]["final"]["top1"]
    assert summary["final"] == summary["models"]["student"]["final"]  # the primary model is `model`
    lines = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    val = [x for x in lines if x.get("split") == "val"][-1]
    assert val["top1"] == summary["models"]["student"]["final"]["top1"]
    assert val["peer1/top1"] == summary["models"]["peer1"]["final"]["top1"]
    train = [x for x in lines if "loss/student/mutual" in x]
    assert train and {"loss/student/cls", "loss/peer1/cls", "loss/peer1/mutual"} <= set(train[0])
    state = ckpt(wd)
    assert set(state["models"]) == {"student", "peer1"} and set(state["strategy"]["optimizers"]) == {"student", "peer1"}
    assert all(torch.equal(v, state["models"]["student"][k]) for k, v in state["model"].items())
    # the peers are different networks (widths 8 and 4), both trained
    assert state["models"]["peer1"]["stem.0.weight"].shape[0] == 4


def test_mutual_learning_resumes_exactly(tiny_config, tmp_path):
    cfg = tiny_config(epochs=2, extra=DML)  # 6 iterations per epoch
    full = run(cfg, tmp_path / "full")
    run(cfg, tmp_path / "part", max_iters=4)
    resumed = run(cfg, tmp_path / "part", resume=True)
    assert resumed["models"] == full["models"] and resumed["iters"] == 12
    a, b = ckpt(tmp_path / "full"), ckpt(tmp_path / "part")
    for name in ("student", "peer1"):
        for k, v in a["models"][name].items():
            assert torch.equal(v, b["models"][name][k]), (name, k)


def test_mutual_term_is_the_papers_kl_and_each_student_gets_only_its_own_gradient():
    torch.manual_seed(0)
    a, b = nn.Linear(6, 5), nn.Linear(6, 5)
    kd = __import__("densekd.losses", fromlist=["KD"]).KD(T=1.0)
    cohort = Cohort([a, b], ["student", "peer1"], TASKS.build(dict(type="classification")), kd, 0.7, "image")
    batch = {"image": torch.randn(8, 6), "target": torch.randint(0, 5, (8,))}
    _, losses = cohort(batch)
    pa, pb = a(batch["image"]).softmax(1), b(batch["image"]).softmax(1)
    kl_b_a = (pb * (pb.log() - pa.log())).sum(1).mean()  # D_KL(p_peer || p_student), batch mean
    assert losses["student/mutual"].item() == pytest.approx(0.7 * kl_b_a.item(), rel=1e-5)
    assert losses["student/cls"].item() == pytest.approx(F.cross_entropy(a(batch["image"]), batch["target"]).item())
    losses["student/mutual"].backward()
    assert a.weight.grad.abs().sum() > 0 and b.weight.grad is None  # the peer's prediction is a target


def test_mutual_learning_refuses_teachers(tiny_config, tmp_path):
    extra = DML + "teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n"
    with pytest.raises(ConfigError, match="remove `teacher`"):
        Trainer(load_config(tiny_config(extra=extra)), tmp_path / "w", device="cpu", synthetic=True)


@DATASETS.register("_FlippedViews")
class FlippedViews(torch.utils.data.Dataset):
    """Test-only wrapper adding ``flipped`` (the image mirrored left-right) to every sample."""

    def __init__(self, dataset):
        self.dataset = DATASETS.build(dataset)
        self.num_classes = self.dataset.num_classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        item = dict(self.dataset[i])
        item["flipped"] = item["image"].flip(-1)
        return item


def test_student_reads_its_configured_input_key_in_training_and_evaluation(tiny_config, tmp_path):
    extra = ("student_input = 'flipped'\n"
             "data = dict(train=dict(_delete_=True, type='_FlippedViews', dataset=dict(type='SyntheticCIFAR100', "
             "split='train', num_samples=16)), val=dict(_delete_=True, type='_FlippedViews', "
             "dataset=dict(type='SyntheticCIFAR100', split='test', num_samples=8)), batch_size=8, val_batch_size=8, num_workers=0)\n"
             "teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8), input='image')\n"
             "distill = [dict(type='KD', T=4, weight=1.0)]\n")
    trainer = Trainer(load_config(tiny_config(extra=extra)), tmp_path / "w", device="cpu", synthetic=True, max_iters=1)
    seen = {"student": [], "teacher": []}
    trainer.strategy.student.register_forward_pre_hook(lambda m, args: seen["student"].append(args[0]))
    trainer.strategy.distiller.teachers[0].register_forward_pre_hook(lambda m, args: seen["teacher"].append(args[0]))
    batch = next(trainer.batches(0))
    trainer.train_iteration(batch)
    assert torch.equal(seen["student"][-1], batch["flipped"]) and torch.equal(seen["teacher"][-1], batch["image"])
    seen["student"].clear()
    trainer.evaluate()
    val_batch = next(iter(trainer.val_loader))
    assert torch.equal(seen["student"][0], val_batch["flipped"])
    trainer.strategy.distiller.student_input = "depth"
    with pytest.raises(KeyError, match=r"the student reads batch\['depth'\].*set student_input"):
        trainer.strategy.distiller(batch)


def test_val_batch_size_is_global_everywhere(tiny_config):
    cfg = load_config(tiny_config(batch=8), ["data.val_batch_size=12"])
    val = DATASETS.build(dict(type="SyntheticCIFAR100", split="test", num_samples=24))
    assert build_val_loader(cfg, val, rank=0, world=1).batch_sampler.batch_size == 12
    assert build_val_loader(cfg, val, rank=1, world=2).batch_sampler.batch_size == 6
    with pytest.raises(ValueError, match="data.val_batch_size=12 is the global batch.*5 processes"):
        build_val_loader(cfg, val, rank=0, world=5)
    del cfg["data"]["val_batch_size"]  # defaults to the (global) training batch
    assert build_val_loader(cfg, val, rank=0, world=2).batch_sampler.batch_size == 4


def test_load_from_initialises_the_student_from_a_checkpoint(tiny_config, tmp_path):
    run(tiny_config(epochs=1), tmp_path / "a")
    best = tmp_path / "a/checkpoints/best.pth"
    trainer = Trainer(load_config(tiny_config(epochs=1), [f"load_from='{best}'"]), tmp_path / "b", device="cpu",
                      synthetic=True)
    want = ckpt(tmp_path / "a", "best.pth")["model"]
    assert all(torch.equal(v, want[k]) for k, v in trainer.strategy.student.state_dict().items())
    with pytest.raises(FileNotFoundError, match="load_from='nowhere.pth': no such checkpoint"):
        Trainer(load_config(tiny_config(), ["load_from='nowhere.pth'"]), tmp_path / "c", device="cpu", synthetic=True)


def test_test_tool_evaluates_every_student_of_a_mutual_learning_checkpoint(tiny_config, tmp_path):
    from densekd.engine.evaluate import evaluate_checkpoint

    cfg_path = tiny_config(epochs=1, extra=DML)
    summary = run(cfg_path, tmp_path / "w")
    cfg = load_config(cfg_path)
    from densekd.engine.builder import use_synthetic

    use_synthetic(cfg)
    metrics, task = evaluate_checkpoint(cfg, str(tmp_path / "w/checkpoints/last.pth"), device="cpu")
    assert task.primary_metric == "top1"
    assert set(metrics) == {"student", "peer1"}
    for name in ("student", "peer1"):
        assert metrics[name]["top1"] == pytest.approx(summary["models"][name]["final"]["top1"])


@pytest.mark.parametrize("name", ["resnet32_resnet32_dml", "resnet32_wrn_16_2_dml"])
def test_shipped_mutual_learning_configs_train(name, tmp_path):
    from tests.conftest import ROOT

    from densekd.engine.builder import use_synthetic

    cfg = load_config(ROOT / f"configs/cifar100/mutual/{name}.py", ["data.batch_size=8", "data.val_batch_size=16",
                                                                  "data.num_workers=0"])
    use_synthetic(cfg)
    cfg["data"]["train"]["num_samples"] = cfg["data"]["val"]["num_samples"] = 16
    summary = Trainer(cfg, tmp_path / name, device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and set(summary["models"]) == {"student", "peer1"}


def test_config_is_validated_once_per_run(tiny_config, tmp_path, monkeypatch):
    import argparse

    from densekd.engine import schema
    from densekd.engine.launch import prepare

    calls = []
    real = schema.validate
    monkeypatch.setattr(schema, "validate", lambda cfg: (calls.append(1), real(cfg))[1])
    args = argparse.Namespace(config=str(tiny_config()), cfg_options=[], seed=None, data_root=None, synthetic=True)
    cfg = prepare(args)
    Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True)
    assert len(calls) == 1
    cfg["train"]["epochz"] = 1  # a config changed after validation is validated again
    with pytest.raises(ConfigError, match="train.epochz"):
        Trainer(cfg, tmp_path / "w2", device="cpu", synthetic=True)


def test_freeze_keeps_the_listed_modules_and_their_statistics_fixed(tiny_config, tmp_path):
    run(tiny_config(epochs=1), tmp_path / "a")
    best = tmp_path / "a/checkpoints/best.pth"
    frozen = ["stem", "layer1", "layer2", "layer3"]
    cfg = load_config(tiny_config(epochs=1), [f"load_from='{best}'", f"freeze={frozen}"])
    trainer = Trainer(cfg, tmp_path / "b", device="cpu", synthetic=True)
    held = {id(p) for g in trainer.strategy.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in trainer.strategy.student.fc.parameters()}  # only the classifier trains
    trainer.train()
    before, after = ckpt(tmp_path / "a", "best.pth")["model"], ckpt(tmp_path / "b")["model"]
    for k, v in after.items():
        if k.split(".")[0] in frozen:  # weights and BatchNorm running statistics alike
            assert torch.equal(v, before[k]), k
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    with pytest.raises(ConfigError, match="freeze: .*'layer9'.*list_taps"):
        Trainer(load_config(tiny_config(), ["freeze=['layer9']"]), tmp_path / "c", device="cpu", synthetic=True)
    with pytest.raises(ConfigError, match="freezes every parameter.*leave the part"):
        Trainer(load_config(tiny_config(), [f"freeze={frozen + ['fc']}"]), tmp_path / "d", device="cpu",
                synthetic=True)


def test_each_student_has_its_own_optimiser_and_learning_rate_following_the_schedule(tiny_config, tmp_path):
    extra = DML.replace("weight=1.0)", "weight=1.0, peer_optimizers=[dict(lr=0.01)])")
    trainer = Trainer(load_config(tiny_config(epochs=3, extra=extra)), tmp_path / "w", device="cpu", synthetic=True)
    opts = trainer.strategy.optimizers()
    assert opts["student"].param_groups[0]["lr"] == 0.05 and opts["peer1"].param_groups[0]["lr"] == 0.01
    trainer.train()  # multistep x0.1 at epoch 2 (tiny_config) applies to both from their own base rates
    assert opts["student"].param_groups[0]["lr"] == pytest.approx(0.005)
    assert opts["peer1"].param_groups[0]["lr"] == pytest.approx(0.001)
    bad = DML.replace("weight=1.0)", "weight=1.0, peer_optimizers=[{}, {}])")
    with pytest.raises(ConfigError, match="2 entries for 1 peers"):
        Trainer(load_config(tiny_config(extra=bad)), tmp_path / "x", device="cpu", synthetic=True)
