"""Active mixup (densekd.strategies.active_mixup) and the black-box teacher it queries: the interface hides the
network and counts every query against the budget, the pool is the release's rotation pairs, the queried
images are the student's least confident ones, rounds resume exactly, and the shipped config runs."""
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.engine.trainer import Trainer
from densekd.registry import STRATEGIES
from densekd.strategies.active_mixup import (LAMBDAS, least_confident, mix_images, pair_members, pool_pairs,
                                             score_pool)
from densekd.strategies.blackbox import BlackBoxTeacher, QueryBudgetExceeded

N = 9  # unlabeled images in the tiny runs: 9 * 4 = 36 pool pairs

AM = ("data['train'] = dict(_delete_=True, type='SubsetDataset', num_samples=9, seed=0, "
      "dataset=dict(type='SyntheticCIFAR100', split='train', num_samples=48, augment=False))\n"
      "lr_schedule = dict(_delete_=True, type='constant')\n"
      "teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n"
      "strategy = dict(type='active_mixup', rounds=2, per_round=5, budget=17, score_batch_size=7)\n")


def run(cfg_path, work_dir, **kw):
    return Trainer(load_config(cfg_path), work_dir, device="cpu", synthetic=True, **kw)


def ckpt(work_dir):
    return torch.load(work_dir / "checkpoints" / "last.pth", weights_only=False)


# -- the black box ---------------------------------------------------------------------------------------------
def test_blackbox_teacher_answers_probabilities_only_and_counts_every_image():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert all(p.requires_grad for p in model.parameters())  # a teacher whose parameters ask for gradients
    teacher = BlackBoxTeacher(model, budget=10, batch_size=3)
    x = torch.randn(4, 3, 2, 2)
    probs = teacher.query(x)
    assert probs.shape == (4, 5) and not probs.requires_grad and probs.grad_fn is None
    assert torch.allclose(probs, model(x).softmax(1), atol=1e-6) and teacher.queries == 4
    with pytest.raises(QueryBudgetExceeded, match="to 11, past its budget of 10"):
        teacher.query(torch.randn(7, 3, 2, 2))
    assert teacher.queries == 4  # a refused query is not sent and not counted
    teacher.query(torch.randn(6, 3, 2, 2))
    assert teacher.queries == 10
    with pytest.raises(QueryBudgetExceeded):
        teacher.query(torch.randn(1, 3, 2, 2))
    # nothing leads to the network
    for name in ("model", "_model", "module", "parameters", "named_parameters", "state_dict", "features", "forward",
                 "to", "eval", "train", "__call__"):
        with pytest.raises((AttributeError, TypeError)):
            getattr(teacher, name)() if name == "__call__" else getattr(teacher, name)
    with pytest.raises(AttributeError, match="query\\(images\\)"):
        teacher.model
    with pytest.raises(TypeError):
        teacher(x)
    with pytest.raises(AttributeError, match="read-only"):
        teacher.model = model
    with pytest.raises(ValueError, match="only grows"):
        teacher.queries = 3
    # a student trained on the answers gives the teacher no gradient
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    loss = -(probs * student(x).log_softmax(1)).sum()
    loss.backward()
    assert all(p.grad is None for p in model.parameters())


# -- the pool and the selection ----------------------------------------------------------------------------------
def test_pool_is_the_releases_rotation_pairs():
    for n in (7, 8, 9):
        ids = torch.arange(pool_pairs(n))
        a, b = pair_members(ids, n)
        pairs = {frozenset(p) for p in zip(a.tolist(), b.tolist())}
        assert len(pairs) == pool_pairs(n) == n * ((n - 1) // 2) and all(len(p) == 2 for p in pairs)
        if n % 2:
            assert pairs == {frozenset(p) for p in itertools.combinations(range(n), 2)}  # every pair once
    # the release: x_comb_index[s] = [seq, np.roll(seq, s + 1)], listed j-major
    n = 7
    seq = np.arange(n)
    want = [(seq[j], np.roll(seq, s + 1)[j]) for s in range((n - 1) // 2) for j in range(n)]
    a, b = pair_members(torch.arange(pool_pairs(n)), n)
    assert sorted(zip(a.tolist(), b.tolist())) == sorted((int(x), int(y)) for x, y in want)
    assert LAMBDAS == pytest.approx(tuple(np.arange(0.30, 0.74, 0.04)))
    images = torch.randn(n, 3, 2, 2)
    x = mix_images(images, torch.tensor([3]), torch.tensor([0.3]))
    i, j = pair_members(torch.tensor([3]), n)
    assert torch.allclose(x[0], 0.3 * images[i[0]] + 0.7 * images[j[0]])


def test_queried_images_are_the_least_confident_for_the_student():
    torch.manual_seed(1)
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4))
    images = torch.randn(N, 3, 2, 2)
    ids = torch.arange(pool_pairs(N))
    conf, lam_idx = score_pool(student, images, ids, LAMBDAS, batch_size=5)
    # independently: every pair, every lambda, one image at a time
    by_hand = np.zeros((len(ids), len(LAMBDAS)))
    for p in ids.tolist():
        s, j = divmod(p, N)
        a, b = j, (j - s - 1) % N
        for li, lam in enumerate(LAMBDAS):
            with torch.no_grad():
                out = student((lam * images[a] + (1 - lam) * images[b])[None])
            by_hand[p, li] = out.softmax(1).max().item()
    assert np.allclose(conf.numpy(), by_hand.min(1), atol=1e-6)
    assert lam_idx.tolist() == by_hand.argmin(1).tolist()
    k = 7
    assert least_confident(conf, k).tolist() == np.argsort(by_hand.min(1), kind="stable")[:k].tolist()


# -- through the trainer -------------------------------------------------------------------------------------------
def test_query_budget_is_never_exceeded_and_counted_exactly(tiny_config, tmp_path):
    trainer = run(tiny_config(epochs=4, extra=AM), tmp_path / "w")
    strategy = trainer.strategy
    assert isinstance(strategy.teacher, BlackBoxTeacher) and strategy.teacher.budget == 17
    # the strategy trains the student alone: no teacher parameter is in its module or optimiser
    student_params = {id(p) for p in strategy.student.parameters()}
    assert {id(p) for p in strategy.module.parameters()} == student_params
    assert {id(p) for g in strategy.optimizer.param_groups for p in g["params"]} == student_params
    assert strategy.plan == [5, 3]  # 9 + 5 + 3 = 17: the budget cuts the second round
    summary = trainer.train()
    assert summary["queries"] == 17 == strategy.teacher.queries and summary["queries_by_round"] == [9, 5, 3]
    assert summary["queried_set"] == 17 and summary["rounds_done"] == 2
    state = ckpt(tmp_path / "w")["strategy"]
    assert state["queries"] == 17 and state["mix_ids"].unique().numel() == 8  # queried pairs leave the pool
    assert state["mix_probs"].shape == (8, 100) and torch.allclose(state["mix_probs"].sum(1), torch.ones(8))
    assert strategy.remaining_pool().numel() == pool_pairs(N) - 8


def test_each_round_queries_the_least_confident_pool_images_and_resumes_exactly(tiny_config, tmp_path):
    cfg = tiny_config(epochs=4, extra=AM)  # 2 iterations per epoch, 8 in all; rounds at [0, 2, 5, 8)
    full = run(cfg, tmp_path / "full")
    assert full.strategy.bounds == [0, 2, 5, 8]
    s_full = full.train()
    # stop at the end of round 0: the checkpoint holds the student that chooses round 1's queries
    part = run(cfg, tmp_path / "part", max_iters=2)
    part.train()
    state = ckpt(tmp_path / "part")
    assert state["strategy"]["round"] == 0 and state["strategy"]["queries"] == N
    student = part.strategy.student
    student.load_state_dict(state["model"])
    conf, lam_idx = score_pool(student, part.strategy.images, torch.arange(pool_pairs(N)), LAMBDAS)
    want = np.argsort(conf.numpy(), kind="stable")[:5]
    # one more iteration (inside round 1), then the rest of the run
    run(cfg, tmp_path / "part", resume=True, max_iters=3).train()
    mid = ckpt(tmp_path / "part")["strategy"]
    assert mid["round"] == 1 and mid["queries"] == N + 5
    assert mid["mix_ids"].tolist() == want.tolist() and mid["mix_lam"].tolist() == lam_idx[want].tolist()
    s_part = run(cfg, tmp_path / "part", resume=True).train()
    assert s_part["final"] == s_full["final"] and s_part["queries"] == s_full["queries"] == 17
    a, b = ckpt(tmp_path / "full"), ckpt(tmp_path / "part")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    for key in ("mix_ids", "mix_lam", "mix_probs", "unlabeled_probs"):
        assert torch.equal(a["strategy"][key], b["strategy"][key]), key
    assert a["strategy"]["queries_by_round"] == b["strategy"]["queries_by_round"] == [9, 5, 3]


def test_learning_rate_restarts_every_round(tiny_config, tmp_path):
    extra = AM.replace("score_batch_size=7", "score_batch_size=7, round_lr=dict(type='multistep', "
                                             "milestones=[0.5], gamma=0.1)")
    trainer = run(tiny_config(epochs=4, extra=extra), tmp_path / "w")
    seen = []
    real = trainer.strategy._batch
    trainer.strategy._batch = lambda *a: (seen.append(trainer.strategy.optimizer.param_groups[0]["lr"]), real(*a))[1]
    trainer.train()
    # rounds of 2, 3, 3 iterations; x0.1 from half of each round on
    assert seen == pytest.approx([0.05, 0.005, 0.05, 0.05, 0.005, 0.05, 0.05, 0.005])


def test_config_is_checked(tiny_config, tmp_path):
    assert "active_mixup" in STRATEGIES.names()
    with pytest.raises(ConfigError, match="lr_schedule = dict\\(_delete_=True, type='constant'\\)"):
        run(tiny_config(extra=AM.replace("lr_schedule = dict(_delete_=True, type='constant')\n", "")), tmp_path / "a")
    with pytest.raises(ConfigError, match="augment=False"):
        run(tiny_config(extra=AM.replace("augment=False", "augment=True")), tmp_path / "b")
    with pytest.raises(ConfigError, match="below the 9 queries of round 0"):
        run(tiny_config(extra=AM.replace("budget=17", "budget=5")), tmp_path / "c")
    with pytest.raises(ConfigError, match="remove `distill`"):
        run(tiny_config(extra=AM + "distill = [dict(type='KD')]\n"), tmp_path / "d")


def test_shipped_active_mixup_config_runs_on_synthetic_data_with_a_tiny_budget(tmp_path):
    from tests.conftest import ROOT

    from densekd.engine.builder import use_synthetic

    cfg = load_config(ROOT / "configs/cifar100/active_mixup/resnet32x4_resnet8x4.py",
                      ["data.batch_size=4", "data.val_batch_size=8", "data.num_workers=0", "data.train.num_samples=7",
                       "strategy.rounds=2", "strategy.per_round=3", "strategy.budget=12", "train.iters=4"])
    use_synthetic(cfg)
    cfg["data"]["train"]["dataset"]["num_samples"] = 16
    cfg["data"]["val"]["num_samples"] = 8
    summary = Trainer(cfg, tmp_path / "am", device="cpu", synthetic=True, max_iters=4).train()
    assert summary["iters"] == 4 and summary["queries"] == 7 + 3 + 2 and summary["queries_by_round"] == [7, 3, 2]
    assert {"top1", "top5"} <= set(summary["final"])


def test_subset_dataset_keeps_a_seeded_subset_and_forwards_metadata():
    from densekd.engine.builder import use_synthetic
    from densekd.config import config_from_dict
    from densekd.registry import DATASETS

    inner = dict(type="SyntheticCIFAR100", split="train", num_samples=30, augment=False)
    sub = DATASETS.build(dict(type="SubsetDataset", dataset=inner, num_samples=10, seed=3))
    full = DATASETS.build(inner)
    want = sorted(torch.randperm(30, generator=torch.Generator().manual_seed(3))[:10].tolist())
    assert sub.indices == want and len(sub) == 10
    assert sub.targets == [full.targets[i] for i in want] and sub.num_classes == 100 and sub.augment is False
    assert torch.equal(sub[4]["image"], full[want[4]]["image"])
    assert DATASETS.build(dict(type="SubsetDataset", dataset=inner, indices=[5, 2])).indices == [5, 2]
    with pytest.raises(ValueError, match="either num_samples"):
        DATASETS.build(dict(type="SubsetDataset", dataset=inner))
    with pytest.raises(ValueError, match="1..30"):
        DATASETS.build(dict(type="SubsetDataset", dataset=inner, num_samples=31))
    cfg = config_from_dict({"data": {"train": {"type": "SubsetDataset", "num_samples": 5,
                                               "dataset": {"type": "CIFAR100", "root": "x", "split": "train"}}}})
    use_synthetic(cfg)  # the inner real dataset is replaced by its stand-in
    assert cfg["data"]["train"]["dataset"]["type"] == "SyntheticCIFAR100"


def test_training_batches_are_padded_crops_and_flips():
    from densekd.strategies.active_mixup import random_crop_flip

    x = torch.randn(6, 3, 5, 5)
    got = random_crop_flip(x, torch.Generator().manual_seed(4), padding=2)
    g = torch.Generator().manual_seed(4)
    offsets = torch.randint(0, 5, (6, 2), generator=g).tolist()
    flips = (torch.rand(6, generator=g) < 0.5).tolist()
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i, ((dy, dx), f) in enumerate(zip(offsets, flips)):
        crop = padded[i, :, dy:dy + 5, dx:dx + 5]
        assert torch.equal(got[i], crop.flip(-1) if f else crop)
    assert any(flips) and not all(flips)


def test_pool_size_scores_a_seeded_part_of_the_remaining_pool(tiny_config, tmp_path):
    trainer = run(tiny_config(extra=AM.replace("budget=17", "budget=17, pool_size=6")), tmp_path / "w")
    strategy = trainer.strategy
    assert strategy.plan == [5, 3]
    strategy.mix_ids = torch.tensor([0, 3, 4, 30])
    c1 = strategy.candidates(1)
    assert c1.numel() == 6 and torch.equal(c1, c1.sort().values) and not set(c1.tolist()) & {0, 3, 4, 30}
    assert torch.equal(c1, strategy.candidates(1)) and not torch.equal(c1, strategy.candidates(2))
    strategy.pool_size = None
    assert strategy.candidates(1).numel() == pool_pairs(N) - 4
