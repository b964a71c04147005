"""Strategies and teachers (issue 11, point 6): multi-teacher configs (an ensemble of teachers, one critic per
teacher) train and resume exactly with the strategy that takes teachers ('distillation'); the cohort
strategies ('mutual_learning', 'kdcl'), which take none, refuse one with a one-line error."""
import pytest
import torch

from densekd.config import ConfigError, load_config
from densekd.engine.builder import use_synthetic
from densekd.engine.trainer import Trainer
from tests.conftest import ROOT

TWO_TEACHERS = """
teachers = [dict(model=dict(type='simple_cnn', num_classes=100, width=8)),
            dict(model=dict(type='simple_cnn', num_classes=100, width=4))]
"""
TERMS = """
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=16,
                       dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=48)),
            val=dict(type='SyntheticCIFAR100', split='test', num_samples=32), batch_size=8, val_batch_size=32,
            num_workers=0)
distill = [dict(type='KD', T=4, weight=0.9, teachers='all', ensemble='mean'),
           dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=16, nce_k=16, weight=0.8,
                teachers='all', ensemble='separate'),
           dict(type='AT', student='feats[1:-1]', teacher='feats[1:-1]', weight=100, teachers=[1])]
"""


def run(cfg, work_dir, **kw):
    return Trainer(load_config(cfg), work_dir, device="cpu", synthetic=True, **kw).train()


def test_distillation_strategy_trains_and_resumes_exactly_with_two_teachers(tiny_config, tmp_path):
    cfg = tiny_config(epochs=2, extra=TWO_TEACHERS + TERMS)
    trainer = Trainer(load_config(cfg), tmp_path / "full", device="cpu", synthetic=True)
    teachers = trainer.strategy.distiller.teachers
    assert len(teachers) == 2
    before = [{k: v.clone() for k, v in t.state_dict().items()} for t in teachers]
    assert len(trainer.strategy.distiller.term_modules(trainer.strategy.distiller.terms[1])) == 2  # a critic each
    full = trainer.train()
    for t, b in zip(teachers, before):  # the teachers stay frozen
        assert all(torch.equal(v, b[k]) for k, v in t.state_dict().items())
    assert full["teachers"] == 2 and full["distill"] == ["KD", "CRD", "AT"]
    run(cfg, tmp_path / "part", max_iters=5)
    resumed = run(cfg, tmp_path / "part", resume=True)
    assert resumed["final"] == full["final"] and resumed["iters"] == full["iters"] == 12
    a = torch.load(tmp_path / "full/checkpoints/last.pth", weights_only=False)
    b = torch.load(tmp_path / "part/checkpoints/last.pth", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["strategy"]["distill"].items():  # both critics' embeddings and memory banks
        assert torch.equal(v, b["strategy"]["distill"][k]), k


def test_shipped_two_teacher_ensemble_config_trains(tmp_path):
    cfg = load_config(ROOT / "configs/cifar100/ensemble/resnet32x4+wrn_40_2-resnet8x4_crd_kd.py",
                      ["data.batch_size=8", "data.val_batch_size=16", "data.num_workers=0"])
    use_synthetic(cfg)
    cfg["data"]["train"]["nce_k"] = 16
    cfg["data"]["train"]["dataset"]["num_samples"] = 16
    cfg["data"]["val"]["num_samples"] = 16
    for t in cfg["distill"]:
        if t["type"] == "CRD":
            t["nce_k"] = 16
    summary = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and summary["teachers"] == 2 and summary["strategy"] == "distillation"


COHORTS = {
    "mutual_learning": "strategy = dict(type='mutual_learning', peers=[dict(type='simple_cnn', num_classes=100, "
                       "width=4)])\n",
    "kdcl": "strategy = dict(type='kdcl', peers=[dict(type='simple_cnn', num_classes=100, width=4)], "
            "rule='minlogit')\n",
}


@pytest.mark.parametrize("strategy", sorted(COHORTS))
@pytest.mark.parametrize("section", ["teachers", "teacher", "distill"])
def test_cohort_strategies_refuse_teachers_in_one_line(strategy, section, tiny_config, tmp_path):
    extra = {"teachers": TWO_TEACHERS,
             "teacher": "teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n",
             "distill": "distill = [dict(type='LabelSmoothingKD', weight=1.0)]\n"}[section]
    with pytest.raises(ConfigError) as info:
        Trainer(load_config(tiny_config(extra=COHORTS[strategy] + extra)), tmp_path / "w", device="cpu",
                synthetic=True)
    msg = str(info.value)
    assert "\n" not in msg and f"strategy {strategy!r}" in msg and f"remove `{section}`" in msg
