"""Fine-tuning from a distilled checkpoint: load_from with a new head (exclude / strict=False, with a report) and
per-module learning-rate multipliers (optimizer.param_groups)."""
import pytest
import torch

from densekd.config import ConfigError, load_config
from densekd.engine.builder import build_student, use_synthetic
from densekd.engine.checkpoint import CheckpointError, load_partial_state
from densekd.engine.schema import validate
from densekd.engine.trainer import Trainer, seed_everything
from tests.conftest import ROOT

FEATURES = ["stem", "layer1", "layer2", "layer3"]


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """A trained tiny CNN's best.pth (stands in for a distilled student)."""
    from tests.conftest import TINY_CIFAR, write_config

    tmp = tmp_path_factory.mktemp("ft")
    cfg = write_config(tmp / "tiny.py", TINY_CIFAR.format(root=ROOT, norm="bn", n_train=32, n_val=16, batch=8, epochs=1))
    Trainer(load_config(cfg), tmp / "pre", device="cpu", synthetic=True).train()
    return cfg, tmp / "pre/checkpoints/best.pth"


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_new_head_is_reinitialised_and_the_encoder_is_the_checkpoints(distilled, tmp_path):
    cfg_path, best = distilled
    cfg = load_config(cfg_path, [f"load_from=dict(path='{best}', exclude=['fc'])"])
    seed_everything(0)
    trainer = Trainer(cfg, tmp_path / "ft", device="cpu", synthetic=True)
    student, want = trainer.strategy.student.state_dict(), weights(best)
    for k, v in student.items():
        if k.startswith("fc."):
            assert not torch.equal(v, want[k]), k
        else:
            assert torch.equal(v, want[k]), k  # weights and BatchNorm statistics
    seed_everything(0)  # the head is the fresh initialisation of the same seed, untouched by the checkpoint
    fresh = build_student(load_config(cfg_path)).state_dict()
    assert torch.equal(student["fc.weight"], fresh["fc.weight"]) and torch.equal(student["fc.bias"], fresh["fc.bias"])
    trainer.close()
    log = (tmp_path / "ft/train.log").read_text()
    assert "load_from: loaded" in log and "kept 2 at their initialisation (exclude): fc.weight, fc.bias" in log


def test_a_head_of_another_size_needs_exclude_or_strict_false(distilled):
    cfg_path, best = distilled
    other = ["model.num_classes=10"]
    shapes = r"another architecture.*fc.weight 100x32 in the file vs 10x32 here.*exclude=\['fc'\]"
    with pytest.raises(CheckpointError, match=shapes):
        build_student(load_config(cfg_path, other + [f"load_from=dict(path='{best}', strict=True, exclude=[])"]))
    model = build_student(load_config(cfg_path, other + [f"load_from=dict(path='{best}', exclude=['fc.*'])"]))
    assert model.fc.weight.shape == (10, 32)
    assert torch.equal(model.stem[0].weight, weights(best)["stem.0.weight"])
    warned = []
    model = build_student(load_config(cfg_path, other + [f"load_from=dict(path='{best}', strict=False)"]),
                          info=lambda m: pytest.fail(m), warn=warned.append)
    assert torch.equal(model.layer3[0][0].weight, weights(best)["layer3.0.0.weight"])
    assert len(warned) == 1 and "2 differ in shape, not loaded: fc.weight 100x32 in the file vs 10x32 here" in warned[0]


def test_load_partial_state_reports_missing_and_unexpected_names():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    state = {"0.weight": torch.ones(4, 3), "0.bias": torch.ones(4), "extra.weight": torch.ones(1)}
    with pytest.raises(CheckpointError, match="2 missing from the file: 1.weight, 1.bias; 1 not in Sequential"):
        load_partial_state(model, state)
    report = load_partial_state(model, state, strict=False)
    assert report["loaded"] == ["0.weight", "0.bias"] and report["missing"] == ["1.weight", "1.bias"]
    assert report["unexpected"] == ["extra.weight"] and torch.equal(model[0].bias, torch.ones(4))
    report = load_partial_state(model, state, exclude=["1", "extra.*"])
    assert report["excluded"] == ["1.weight", "1.bias"] and not report["missing"] and not report["unexpected"]
    with pytest.raises(ValueError, match="exclude pattern 'fc' matches no parameter"):
        load_partial_state(model, state, exclude=["fc"])


def test_load_from_section_is_validated(tiny_config):
    with pytest.raises(ConfigError, match="load_from.pth'.*Did you mean 'path'"):
        validate(load_config(tiny_config(), ["load_from=dict(pth='x.pth')"]))
    with pytest.raises(ConfigError, match="load_from.strict must be True or False"):
        validate(load_config(tiny_config(), ["load_from=dict(path='x.pth', strict='no')"]))
    with pytest.raises(FileNotFoundError, match="load_from='nowhere.pth': no such checkpoint"):
        build_student(load_config(tiny_config(), ["load_from=dict(path='nowhere.pth', exclude=['fc'])"]))


def test_param_groups_give_the_encoder_a_lower_learning_rate(distilled, tmp_path):
    cfg_path, best = distilled
    rules = [dict(prefix=p, lr_mult=0.1) for p in FEATURES] + [dict(prefix="layer3.0.1", lr_mult=0.0, wd_mult=0.0)]
    cfg = load_config(cfg_path, [f"load_from=dict(path='{best}', exclude=['fc'])", f"optimizer.param_groups={rules}",
                                 "train.epochs=3"])
    trainer = Trainer(cfg, tmp_path / "ft", device="cpu", synthetic=True)
    student = trainer.strategy.student
    groups = {g["name"]: g for g in trainer.strategy.optimizer.param_groups}
    assert list(groups) == ["default", "stem", "layer1", "layer2", "layer3", "layer3.0.1"]
    ids = lambda g: {id(p) for p in g["params"]}  # noqa: E731
    assert ids(groups["default"]) == {id(p) for p in student.fc.parameters()} and groups["default"]["lr"] == 0.05
    for name in FEATURES:
        assert groups[name]["lr"] == pytest.approx(0.005) and groups[name]["weight_decay"] == pytest.approx(5e-4)
    assert ids(groups["layer3"]) == {id(student.layer3[0][0].weight)}  # the longest prefix wins
    assert ids(groups["layer3.0.1"]) == {id(p) for p in student.layer3[0][1].parameters()}
    assert groups["layer3.0.1"]["lr"] == 0.0 and groups["layer3.0.1"]["weight_decay"] == 0.0
    bn = student.layer3[0][1].weight.detach().clone()
    trainer.train()  # the schedule (x0.1 at epoch 2) scales every group from its own base rate
    assert [g["lr"] for g in trainer.strategy.optimizer.param_groups] == pytest.approx(
        [0.005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0])
    assert torch.equal(student.layer3[0][1].weight, bn)  # lr_mult 0: unchanged


def test_param_group_errors(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="param_groups.0: unknown key 'lr_mul'.*Did you mean 'lr_mult'"):
        validate(load_config(tiny_config(), ["optimizer.param_groups=[dict(prefix='stem', lr_mul=0.1)]"]))
    with pytest.raises(ValueError, match="prefix 'layr1' matches no parameter of SimpleCNN. Closest module paths: layer1"):
        Trainer(load_config(tiny_config(), ["optimizer.param_groups=[dict(prefix='layr1', lr_mult=0.1)]"]),
                tmp_path / "w", device="cpu", synthetic=True)


def test_shipped_fine_tuning_config_builds_from_a_checkpoint(tmp_path):
    cfg = load_config(ROOT / "configs/cifar100/finetune/resnet8x4_crd_new_head.py")
    use_synthetic(cfg)
    seed_everything(0)
    donor = build_student(load_config(ROOT / "configs/cifar100/students/resnet8x4.py"))
    torch.save({"model": donor.state_dict()}, tmp_path / "crd.pth")
    cfg["load_from"]["path"] = str(tmp_path / "crd.pth")
    validate(cfg)
    model = build_student(cfg)
    assert torch.equal(model.layer3[0].conv1.weight, donor.layer3[0].conv1.weight)
    assert not torch.equal(model.fc.weight, donor.fc.weight)
