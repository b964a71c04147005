"""KDCL (Guo et al., CVPR 2020): the four ensemble rules against hand computations, the KD term's gradient,
per-student views, the held-out split, metrics of every student and of the ensemble, exact resume, and the
shipped configs."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.data.multiview import HoldoutSplit, MultiViewDataset
from densekd.data.sampling import forked_rng
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS, STRATEGIES, TASKS
from tests.conftest import ROOT

from densekd.strategies.kdcl import (KDCLCohort, fit_linear_weights, general_weights, linear_teacher,
                                     minlogit_teacher, naive_teacher)

# two students, three samples, three classes; labels 0, 1, 2
Z1 = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 1.0]])
Z2 = torch.tensor([[1.0, 2.0, 0.5], [0.0, 1.0, 4.0], [0.0, 0.0, 2.0]])
Y = torch.tensor([0, 1, 2])


def test_naive_takes_per_sample_the_student_with_the_lowest_cross_entropy():
    # sample 0: CE(z1) = log(1 + e^-1 + e^-2) < CE(z2) (z2 prefers class 1) -> z1
    # sample 1: z1 puts its largest logit on the label, z2 on class 2 -> z1
    # sample 2: CE(z1) = log 3 = 1.0986 > CE(z2) = log(2 + e^2) - 2 = 0.2395 -> z2
    want = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 2.0]])
    assert torch.equal(naive_teacher([Z1, Z2], Y), want)
    assert torch.equal(naive_teacher([Z2, Z1], Y), want)  # the order of the students does not matter


def test_minlogit_is_the_elementwise_minimum_of_the_logits_relative_to_the_target_logit():
    # z1 - z1[y]: [0, -1, -2], [-3, 0, -2], [0, 0, 0];  z2 - z2[y]: [0, 1, -1.5], [-1, 0, 3], [-2, -2, 0]
    want = torch.tensor([[0.0, -1.0, -2.0], [-3.0, 0.0, -2.0], [-2.0, -2.0, 0.0]])
    assert torch.equal(minlogit_teacher([Z1, Z2], Y), want)


def test_rules_take_any_number_of_students():
    z3 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 1.0]])
    # sample 0: z3 is the most confident on class 0; samples 1, 2 as before (z3 is worse there)
    assert torch.equal(naive_teacher([Z1, Z2, z3], Y),
                       torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 2.0]]))
    # z3 - z3[y]: [0, -3, -3], [0, 0, 0], [4, -1, 0]
    assert torch.equal(minlogit_teacher([Z1, Z2, z3], Y),
                       torch.tensor([[0.0, -3.0, -3.0], [-3.0, 0.0, -2.0], [-2.0, -2.0, 0.0]]))


def test_linear_teacher_is_the_weighted_sum_of_the_logits():
    want = torch.tensor([[1.25, 1.75, 0.375], [0.0, 1.5, 3.25], [0.25, 0.25, 1.75]])  # 0.25 z1 + 0.75 z2
    assert torch.allclose(linear_teacher([Z1, Z2], torch.tensor([0.25, 0.75])), want)


def test_linear_weights_minimise_the_ensembles_cross_entropy():
    torch.manual_seed(0)
    y = torch.randint(0, 5, (200,))
    good = F.one_hot(y, 5).float() * 2 + torch.randn(200, 5)  # a student that knows the labels
    bad = torch.randn(200, 5)  # one that does not
    z = torch.stack([good, bad])
    w = fit_linear_weights(z, y)

    def ce(v):
        return F.cross_entropy(torch.einsum("m,mnc->nc", v, z), y).item()

    best = ce(w)
    assert w[0] > abs(w[1]) and best < ce(torch.tensor([0.5, 0.5])) and best < ce(torch.tensor([1.0, 0.0]))
    for d in ([1e-2, 0], [-1e-2, 0], [0, 1e-2], [0, -1e-2]):  # a minimum: every small step is worse
        assert ce(w + torch.tensor(d)) > best


def test_general_weights_are_the_inverse_error_correlation_combination():
    z = torch.stack([Z1, Z2])
    e = [F.softmax(zi, 1) - F.one_hot(Y, 3).float() for zi in z]
    c = [[sum(float((e[i][n] * e[j][n]).sum()) for n in range(3)) / 3 for j in range(2)] for i in range(2)]
    ridge = 1e-6 * (c[0][0] + c[1][1]) / 2
    a, b, d = c[0][0] + ridge, c[0][1], c[1][1] + ridge
    inv_rows = [(d - b), (a - b)]  # rows of the 2x2 inverse times the determinant, applied to (1, 1)
    want = torch.tensor([inv_rows[0] / sum(inv_rows), inv_rows[1] / sum(inv_rows)])
    assert torch.allclose(general_weights(z, Y), want, atol=1e-6)


def _cohort(rule="minlogit", T=2.0, weight=0.5):
    torch.manual_seed(0)
    a, b = nn.Linear(6, 3), nn.Linear(6, 3)
    cohort = KDCLCohort([a, b], ["student", "peer1"], TASKS.build(dict(type="classification")),
                        ["image_0", "image_1"], rule=rule, T=T, weight=weight)
    batch = {"image_0": torch.randn(4, 6), "image_1": torch.randn(4, 6), "target": torch.tensor([0, 1, 2, 1])}
    return cohort, a, b, batch


def test_kd_term_is_weighted_T2_kl_from_the_ensemble_and_reaches_only_its_own_student():
    cohort, a, b, batch = _cohort()
    _, losses = cohort(batch)
    za, zb = a(batch["image_0"]), b(batch["image_1"])  # each student on its own view
    zt = minlogit_teacher([za, zb], batch["target"])
    p_t, p_a = F.softmax(zt / 2.0, 1), F.softmax(za / 2.0, 1)
    kl = (p_t * (p_t.log() - p_a.log())).sum(1).mean()
    assert losses["student/kdcl"].item() == pytest.approx(0.5 * 4.0 * kl.item(), rel=1e-5)
    assert losses["student/cls"].item() == pytest.approx(F.cross_entropy(za, batch["target"]).item(), rel=1e-6)
    losses["student/kdcl"].backward()
    assert a.weight.grad.abs().sum() > 0
    assert b.weight.grad is None  # the ensemble teacher is detached: nothing flows into the other student
    for rule in ("naive", "linear", "general"):
        cohort, a, b, batch = _cohort(rule)
        _, losses = cohort(batch)
        losses["peer1/kdcl"].backward()
        assert a.weight.grad is None and b.weight.grad.abs().sum() > 0, rule


def test_multiview_draws_one_augmentation_per_view_and_holdout_splits_once():
    base = dict(type="SyntheticCIFAR100", split="train", num_samples=20)
    mv = MultiViewDataset(base, views=3)
    with forked_rng(7):
        s = mv[4]
    with forked_rng(7):
        again = mv[4]
    assert {"image_0", "image_1", "image_2", "target"} <= set(s) and "image" not in s
    assert not torch.equal(s["image_0"], s["image_1"]) and not torch.equal(s["image_1"], s["image_2"])
    assert all(torch.equal(s[k], again[k]) for k in ("image_0", "image_1", "image_2"))  # seeded per sample
    assert mv.num_classes == 100 and len(mv) == 20

    train = HoldoutSplit(base, holdout=0.25)
    held = train.holdout_set()
    assert len(train) == 15 and len(held) == 5
    assert sorted(list(train.indices) + list(held.indices)) == list(range(20))
    assert list(HoldoutSplit(base, holdout=5).indices) == list(train.indices)  # a count or a fraction
    assert not held.dataset.augment  # held-out predictions are taken on the plain images
    assert held.targets == [held.dataset.targets[i] for i in held.indices]
    with pytest.raises(ValueError, match="holdout=20 gives 20 held-out samples of 20"):
        HoldoutSplit(base, holdout=20)


KDCL = """
data = dict(train=dict(_delete_=True, type='MultiViewDataset', views=2,
                       dataset=dict(type='HoldoutSplit', holdout=16,
                                    dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=64))),
            val=dict(type='SyntheticCIFAR100', split='test', num_samples=32), batch_size=8, val_batch_size=32,
            num_workers=0)
strategy = dict(type='kdcl', peers=[dict(type='simple_cnn', num_classes=100, width=4)], rule={rule!r},
                student_inputs=['image_0', 'image_1'])
"""


def run(cfg_path, work_dir, **kw):
    return Trainer(load_config(cfg_path), work_dir, device="cpu", synthetic=True, **kw).train()


def test_each_student_reads_its_own_view(tiny_config, tmp_path):
    trainer = Trainer(load_config(tiny_config(extra=KDCL.format(rule="minlogit"))), tmp_path / "w", device="cpu",
                      synthetic=True)
    seen = []
    for m in trainer.strategy.students:
        m.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    batch = next(trainer.batches(0))
    trainer.train_iteration(batch)
    assert torch.equal(seen[0], batch["image_0"]) and torch.equal(seen[1], batch["image_1"])
    assert not torch.equal(batch["image_0"], batch["image_1"])  # two different augmentations of the same images
    assert len(trainer.train_set) == 48  # the 16 held-out samples are not trained on


def test_kdcl_resumes_exactly_with_per_student_and_ensemble_metrics(tiny_config, tmp_path):
    cfg = tiny_config(epochs=3, extra=KDCL.format(rule="linear"))  # 48 training samples: 6 iterations per epoch
    full = run(cfg, tmp_path / "full")
    run(cfg, tmp_path / "part", max_iters=8)  # stops after the epoch-1 fit of the weights
    resumed = run(cfg, tmp_path / "part", resume=True)
    assert resumed["models"] == full["models"] and resumed["iters"] == 18
    assert resumed["ensemble_weights"] == full["ensemble_weights"]
    assert [f["epoch"] for f in full["ensemble_fits"]] == [1, 2] and resumed["ensemble_fits"] == full["ensemble_fits"]
    a = torch.load(tmp_path / "full/checkpoints/last.pth", weights_only=False)
    b = torch.load(tmp_path / "part/checkpoints/last.pth", weights_only=False)
    for name in ("student", "peer1", "ensemble"):
        for k, v in a["models"][name].items():
            assert torch.equal(v, b["models"][name][k]), (name, k)
    assert set(a["strategy"]["optimizers"]) == {"student", "peer1"}
    assert torch.equal(a["models"]["ensemble"]["weights"], a["strategy"]["ensemble_weights"])
    assert a["strategy"]["ensemble_weights"].tolist() == pytest.approx(full["ensemble_weights"], abs=1e-6)

    assert set(full["models"]) == {"student", "peer1", "ensemble"} and full["strategy"] == "kdcl"
    assert full["final"] == full["models"]["student"]["final"]
    lines = [json.loads(x) for x in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    val = [x for x in lines if x.get("split") == "val"][-1]
    assert val["peer1/top1"] == full["models"]["peer1"]["final"]["top1"]
    assert val["ensemble/top1"] == full["models"]["ensemble"]["final"]["top1"]
    train = [x for x in lines if "loss/student/kdcl" in x]
    assert train and {"loss/student/cls", "loss/peer1/cls", "loss/peer1/kdcl"} <= set(train[0])

    from densekd.engine.builder import use_synthetic
    from densekd.engine.evaluate import evaluate_checkpoint

    c = load_config(cfg)
    use_synthetic(c)
    metrics, _ = evaluate_checkpoint(c, str(tmp_path / "full/checkpoints/last.pth"), device="cpu")
    for name in ("student", "peer1", "ensemble"):
        assert metrics[name]["top1"] == pytest.approx(full["models"][name]["final"]["top1"])


def test_ensemble_model_uses_the_fitted_weights(tiny_config, tmp_path):
    trainer = Trainer(load_config(tiny_config(extra=KDCL.format(rule="linear"))), tmp_path / "w", device="cpu",
                      synthetic=True)
    s = trainer.strategy
    w = s.fit(torch.device("cpu"), epoch=1)
    assert s.fitted_epoch == 1 and torch.equal(s.module.ensemble_weights, w) and torch.equal(s.ensemble.weights, w)
    x = torch.randn(3, 3, 32, 32)
    for m in s.students:
        m.eval()
    want = sum(w[i] * m(x) for i, m in enumerate(s.students))
    assert torch.allclose(s.ensemble(x), want, atol=1e-6)


def test_fitted_rules_need_a_holdout_split_and_rules_are_checked(tiny_config, tmp_path):
    plain = KDCL.format(rule="general").replace(
        "dataset=dict(type='HoldoutSplit', holdout=16,\n                                    "
        "dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=64))",
        "dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=64)")
    with pytest.raises(ConfigError, match="rule='general' fits its ensemble weights on held-out data: wrap"):
        Trainer(load_config(tiny_config(extra=plain)), tmp_path / "a", device="cpu", synthetic=True)
    with pytest.raises(ConfigError, match="rule='mean'; choose one of naive, linear, minlogit, general"):
        Trainer(load_config(tiny_config(extra=KDCL.format(rule="mean"))), tmp_path / "b", device="cpu", synthetic=True)
    bad = KDCL.format(rule="naive").replace("student_inputs=['image_0', 'image_1']", "student_inputs=['image_0']")
    with pytest.raises(ConfigError, match="give a list of 2 batch keys"):
        Trainer(load_config(tiny_config(extra=bad)), tmp_path / "c", device="cpu", synthetic=True)
    assert "kdcl" in STRATEGIES.names()


@pytest.mark.parametrize("path", sorted((ROOT / "configs/cifar100/kdcl").glob("*.py")), ids=lambda p: p.stem)
def test_shipped_kdcl_configs_train_on_synthetic_data(path, tmp_path):
    from densekd.engine.builder import use_synthetic

    cfg = load_config(path, ["data.batch_size=8", "data.val_batch_size=16", "data.num_workers=0"])
    use_synthetic(cfg)
    inner = cfg["data"]["train"]["dataset"]
    (inner["dataset"] if inner["type"] == "HoldoutSplit" else inner)["num_samples"] = 24
    cfg["data"]["val"]["num_samples"] = 16
    summary = Trainer(cfg, tmp_path / path.stem, device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and set(summary["models"]) == {"student", "peer1", "ensemble"}
    assert summary["rule"] == path.stem.split("_")[-1]
    assert all(math.isfinite(v) for m in summary["models"].values() for v in m["final"].values())


def test_registered_wrappers():
    assert {"MultiViewDataset", "HoldoutSplit"} <= set(DATASETS.names())


def test_check_data_maps_held_out_indices_to_the_inner_samples(monkeypatch):
    base = DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=20))
    checked = []
    monkeypatch.setattr(base, "check_sample", lambda i: checked.append(i), raising=False)
    split = HoldoutSplit(base, holdout=5)
    MultiViewDataset(split, views=2).check_sample(3)  # forwarded to the split, which maps the index
    assert checked == [int(split.indices[3])]
    assert split.sample_files(0) == []
