import pytest

from densekd.config import ConfigError, apply_overrides, load_config, parse_override_value
from densekd.engine.schema import validate
from tests.conftest import write_config


def test_base_inheritance_deep_merges_dicts_and_replaces_lists(tmp_path):
    write_config(tmp_path / "base.py", "optimizer = dict(type='SGD', lr=0.1, momentum=0.9)\n"
                                       "lr_schedule = dict(milestones=[1, 2])\nseed = 1\n")
    child = write_config(tmp_path / "sub" / "child.py",
                         "_base_ = ['../base.py']\noptimizer = dict(lr=0.5)\nlr_schedule = dict(milestones=[7])\n")
    cfg = load_config(child)
    assert cfg["optimizer"] == {"type": "SGD", "lr": 0.5, "momentum": 0.9}
    assert cfg["lr_schedule"]["milestones"] == [7]
    assert cfg["seed"] == 1
    assert cfg.source_of("optimizer.lr").endswith("child.py")
    assert cfg.source_of("optimizer.momentum").endswith("base.py")


def test_later_bases_override_earlier_and_delete_replaces(tmp_path):
    write_config(tmp_path / "a.py", "train = dict(epochs=1, amp='bf16')\n")
    write_config(tmp_path / "b.py", "train = dict(epochs=2)\n")
    child = write_config(tmp_path / "c.py", "_base_ = ['a.py', 'b.py']\n")
    assert load_config(child)["train"] == {"epochs": 2, "amp": "bf16"}
    child2 = write_config(tmp_path / "d.py", "_base_ = ['a.py']\ntrain = dict(_delete_=True, iters=5)\n")
    assert load_config(child2)["train"] == {"iters": 5}


def test_overrides_parse_literals_and_index_lists(tmp_path):
    path = write_config(tmp_path / "c.py", "distill = [dict(type='KD', T=4, weight=0.9)]\noptimizer = dict(lr=0.1)\n")
    cfg = load_config(path, ["optimizer.lr=0.2", "distill.0.weight=2", "lr_schedule.milestones=[1,2]",
                             "optimizer.type=AdamW", "train.amp=None", "train.channels_last=true"])
    assert cfg["optimizer"] == {"lr": 0.2, "type": "AdamW"}
    assert cfg["distill"][0]["weight"] == 2
    assert cfg["lr_schedule"]["milestones"] == [1, 2]
    assert cfg["train"] == {"amp": None, "channels_last": True}
    assert cfg.source_of("distill.0.weight") == "--cfg-options"
    assert parse_override_value("(1, 2)") == (1, 2)
    assert parse_override_value("[dict(type='KD', T=4)]") == [{"type": "KD", "T": 4}]
    assert parse_override_value("work_dirs/x") == "work_dirs/x"
    with pytest.raises(ConfigError, match="index"):
        apply_overrides(cfg, ["distill.3.weight=1"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["optimizer.lr"])


def test_misspelt_key_names_key_source_and_close_match(tmp_path, tiny_config):
    path = tiny_config(extra="optimizer = dict(momentun=0.9)\n")
    with pytest.raises(ConfigError) as err:
        validate(load_config(path))
    msg = str(err.value)
    assert "optimizer.momentun" in msg and str(path) in msg and "'momentum'" in msg
    with pytest.raises(ConfigError) as err:
        validate(load_config(tiny_config(), ["train.epoch=3"]))
    assert "train.epoch" in str(err.value) and "--cfg-options" in str(err.value) and "'epochs'" in str(err.value)
    with pytest.raises(ConfigError, match="Did you mean 'optimizer'"):
        validate(load_config(tiny_config(), ["optimiser.lr=1"]))


def test_typed_dict_kwargs_checked_against_constructor(tiny_config):
    with pytest.raises(ConfigError) as err:
        validate(load_config(tiny_config(), ["model.widht=4"]))
    msg = str(err.value)
    assert "widht" in msg and "'width'" in msg and "--cfg-options" in msg
    with pytest.raises(ConfigError, match="Unknown model type 'resnet33'"):
        validate(load_config(tiny_config(), ["model.type=resnet33"]))
    with pytest.raises(ConfigError, match="KD"):
        validate(load_config(tiny_config(), ["distill=[dict(type='KD', Temp=4)]"]))


def test_private_names_ignored_and_errors_for_files(tmp_path, tiny_config):
    validate(load_config(tiny_config(extra="_crop = 4\n")))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.py")
    a = write_config(tmp_path / "x.py", "_base_ = ['y.py']\n")
    write_config(tmp_path / "y.py", "_base_ = ['x.py']\n")
    with pytest.raises(ConfigError, match="Circular"):
        load_config(a)


def test_dump_round_trips(tmp_path, tiny_config):
    cfg = load_config(tiny_config(), ["optimizer.lr=0.3"])
    out = write_config(tmp_path / "resolved.py", cfg.dump())
    again = load_config(out)
    assert dict(again) == dict(cfg)


def test_a_base_files_delete_replaces_what_its_sibling_bases_set(tmp_path):
    """A base listed after another replaces a section it marks _delete_ (here the strategy bases' lr_schedule)."""
    write_config(tmp_path / "a.py", "lr_schedule = dict(type='multistep', milestones=[150], by_epoch=True)\n")
    write_config(tmp_path / "b.py", "lr_schedule = dict(_delete_=True, type='constant')\n")
    child = write_config(tmp_path / "c.py", "_base_ = ['a.py', 'b.py']\n")
    cfg = load_config(child)
    assert cfg["lr_schedule"] == {"type": "constant"}
    assert cfg.source_of("lr_schedule.type").endswith("b.py")
    grand = write_config(tmp_path / "d.py", "_base_ = ['c.py']\nlr_schedule = dict(min_lr_ratio=0.1)\n")
    assert load_config(grand)["lr_schedule"] == {"type": "constant", "min_lr_ratio": 0.1}
    assert "_delete_" not in str(dict(load_config(grand)))
