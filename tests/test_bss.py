"""Boundary-supporting samples (densekd.strategies.bss): the iterative scheme on a tiny fixed teacher, the
target-class distribution, base-sample selection, the release's weight schedule, a frozen teacher, exact
resume through the Trainer and the shipped CIFAR-100 config."""
import math

import pytest
import torch
from torch import nn

from densekd.config import ConfigError, load_config
from densekd.engine.trainer import Trainer
from densekd.registry import STRATEGIES, TASKS
from densekd.strategies.bss import (BSSDistiller, bss_attack, linear_decay, sample_target_classes,
                                    select_base_samples, soft_kl, target_class_probs)

BSS = ("teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n"
       "strategy = dict(type='bss', T=3.0, attack_size=4, steps=3, base_samples='any')\n")


def tiny_teacher(seed=0, classes=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, classes)).eval()


def margin(teacher, x, b, k):
    with torch.no_grad():
        out = teacher(x)
    return out.gather(1, b[:, None]).squeeze(1) - out.gather(1, k[:, None]).squeeze(1)


def test_teacher_margin_shrinks_along_the_iterations_until_the_decision_flips():
    teacher = tiny_teacher()
    x = torch.randn(16, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        b = teacher(x).argmax(1)
    k = (b + 1) % 5
    adv, rec = bss_attack(teacher, x, k, steps=10, eta=0.3, eps=1e-4, clamp=None, record=True)
    assert torch.equal(rec["base"], b) and len(rec["margins"]) >= 2
    start, end = margin(teacher, x, b, k), margin(teacher, adv, b, k)
    for i in range(1, len(rec["margins"])):
        moved = rec["active"][i - 1]
        # every sample that moved got closer to class k; a sample that did not move kept its margin exactly
        assert (rec["margins"][i][moved] < rec["margins"][i - 1][moved]).all()
        assert torch.equal(rec["margins"][i][~moved], rec["margins"][i - 1][~moved])
    assert (end < start).all()
    with torch.no_grad():
        flipped = teacher(adv).argmax(1) != b
    # samples still moving at the last recorded iteration have not flipped; stopped ones have
    assert torch.equal(flipped[~rec["active"][-1]], torch.ones_like(flipped[~rec["active"][-1]]))


def test_one_step_is_the_stated_update_rule():
    """x1 = x0 - eta (L + eps) grad L / ||grad L||^p, written out by hand on a linear teacher."""
    torch.manual_seed(3)
    lin = nn.Linear(6, 4)
    teacher = nn.Sequential(nn.Flatten(), lin).eval()
    x = torch.randn(5, 6)
    with torch.no_grad():
        b = teacher(x).argmax(1)
    k = (b + 2) % 4
    w = lin.weight.detach()
    g = w[b] - w[k]  # grad of L_k = f_b - f_k for a linear model, per sample
    L = margin(teacher, x, b, k)
    for p, eta in ((1, 0.3), (2, 0.5)):
        adv = bss_attack(teacher, x, k, steps=1, eta=eta, eps=1e-4, grad_norm_power=p, clamp=None)
        want = x - (eta * (L + 1e-4) / g.norm(dim=1) ** p)[:, None] * g
        assert torch.allclose(adv, want, atol=1e-6)
    # the DeepFool-style normalisation (p=2, eta=1) lands on the linearised boundary in one step: L -> -eps
    adv = bss_attack(teacher, x, k, steps=1, eta=1.0, eps=1e-4, grad_norm_power=2, clamp=None)
    assert torch.allclose(margin(teacher, adv, b, k), torch.full_like(L, -1e-4), atol=1e-5)
    adv = bss_attack(teacher, x, k, steps=1, eta=1.0, grad_norm_power=2, clamp=(-0.1, 0.1))
    assert adv.abs().max() <= 0.1 + 1e-7


def test_target_class_probabilities_are_q_over_one_minus_max_q():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 3.0, 0.5, 1.0]])
    got = target_class_probs(logits)
    for row, p in zip(logits.tolist(), got):
        e = [math.exp(v) for v in row]
        q = [v / sum(e) for v in e]
        top = q.index(max(q))
        want = [0.0 if c == top else q[c] / (1 - max(q)) for c in range(4)]
        assert p.tolist() == pytest.approx(want, abs=1e-6)
    assert target_class_probs(torch.tensor([[200.0, 0.0, -5.0]])).sum().item() == pytest.approx(1.0)  # q_max -> 1
    # empirical frequencies of the sampler, seeded generator (binomial 5-sigma band)
    n = 20000
    draws = sample_target_classes(logits[:1].expand(n, 4), torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / n
    p = got[0].double()
    assert freq[0] == 0
    assert ((freq - p).abs() <= 5 * (p * (1 - p) / n).sqrt() + 1e-12).all(), (freq, p)
    again = sample_target_classes(logits[:1].expand(n, 4), torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_base_samples_are_the_correct_ones_with_the_largest_distillation_gap():
    t = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [3.0, 0, 0], [0, 3.0, 0]])
    s = torch.tensor([[2.0, 1, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 3.0, 0], [0, 0.2, 0]])
    y = torch.tensor([0, 1, 2, 0, 2])
    assert select_base_samples(t, s, y, 10, "teacher_correct").tolist() == [0, 1, 2, 3]
    assert select_base_samples(t, s, y, 10, "both_correct").tolist() == [0, 1, 2]  # 3: student wrong
    assert select_base_samples(t, s, None, 10, "any").tolist() == [0, 1, 2, 3, 4]

    def gap(i):
        d = (t[i].softmax(0) - s[i].softmax(0)) ** 2
        return (d.sum() - d[y[i]]).item()

    want = sorted([0, 1, 2], key=lambda i: -gap(i))[:2]
    assert select_base_samples(t, s, y, 2, "both_correct").tolist() == want
    with pytest.raises(ValueError, match="needs the labels"):
        select_base_samples(t, s, None, 2, "both_correct")


def test_weights_follow_the_release_schedule():
    E = 80
    for e in range(1, E + 1):
        assert linear_decay(e, E, 4.0, 1.0, 1.0) == pytest.approx(max(3 * (1 - e / E), 0) + 1)
        assert linear_decay(e, E, 2.0, 0.0, 0.75) == pytest.approx(max(2 * (1 - 4 / 3 * e / E), 0) + 0)
    s = torch.randn(6, 10)
    t = torch.randn(6, 10)
    p_t = (t / 3).softmax(1)
    want = (p_t * ((t / 3).log_softmax(1) - (s / 3).log_softmax(1))).sum(1).mean()
    assert soft_kl(s, t, 3.0).item() == pytest.approx(want.item(), rel=1e-5)


def test_teacher_gets_no_gradient_and_stays_unchanged():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(12, 5)).eval()
    student = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    module = BSSDistiller(student, teacher, TASKS.build(dict(type="classification")), T=3.0, attack_size=8, steps=5,
                          eta=0.3, eps=1e-4, grad_norm_power=1, clamp=None, base_samples="any", task_weight=1.0)
    for p in teacher.parameters():
        p.requires_grad_(True)  # even a teacher whose parameters ask for gradients gets none
    module.weights = (1.0, 2.0)
    batch = {"image": torch.randn(8, 3, 2, 2), "target": torch.randint(0, 5, (8,))}
    _, losses = module(batch)
    assert set(losses) == {"cls", "kd", "bss"} and losses["bss"].item() > 0 and module.stats["bss"] == 8
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())


def test_strategy_is_registered_and_validated(tiny_config, tmp_path):
    assert "bss" in STRATEGIES.names()
    with pytest.raises(ConfigError, match="remove `distill`"):
        Trainer(load_config(tiny_config(extra=BSS + "distill = [dict(type='KD', T=4)]\n")), tmp_path / "a",
                device="cpu", synthetic=True)
    with pytest.raises(ConfigError, match="one teacher"):
        Trainer(load_config(tiny_config(extra=BSS.replace("teacher = dict(", "_t = dict("))), tmp_path / "b",
                device="cpu", synthetic=True)
    with pytest.raises(ConfigError, match="kd_weight"):
        Trainer(load_config(tiny_config(extra=BSS + "strategy.update(kd_weight=dict(begin=1))\n")), tmp_path / "c",
                device="cpu", synthetic=True)


def test_bss_resumes_exactly_through_the_trainer(tiny_config, tmp_path):
    cfg = tiny_config(epochs=2, extra=BSS)  # 6 iterations per epoch; the BSS weight is 0 in epoch 2
    full = Trainer(load_config(cfg), tmp_path / "full", device="cpu", synthetic=True)
    teacher_before = {k: v.clone() for k, v in full.strategy.module.teacher.state_dict().items()}
    s_full = full.train()
    assert s_full["bss_samples"] == 6 * 4 and s_full["strategy"] == "bss"  # 'any': attack_size per iteration
    assert all(torch.equal(v, teacher_before[k]) for k, v in full.strategy.module.teacher.state_dict().items())
    Trainer(load_config(cfg), tmp_path / "part", device="cpu", synthetic=True, max_iters=4).train()
    s_part = Trainer(load_config(cfg), tmp_path / "part", device="cpu", synthetic=True, resume=True).train()
    assert s_part["final"] == s_full["final"] and s_part["iters"] == 12
    assert {k: s_part[k] for k in ("bss_samples", "bss_flipped")} == {k: s_full[k] for k in ("bss_samples", "bss_flipped")}
    a = torch.load(tmp_path / "full/checkpoints/last.pth", weights_only=False)
    b = torch.load(tmp_path / "part/checkpoints/last.pth", weights_only=False)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())
    import json

    logs = [json.loads(x) for x in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    train = [x for x in logs if "loss/bss" in x]
    assert train[0]["loss/bss"] > 0 and train[-1]["loss/bss"] == 0.0  # weight 2*(1-4/3*1/2) then 0


def test_shipped_bss_config_trains_on_synthetic_data(tmp_path):
    from tests.conftest import ROOT

    from densekd.engine.builder import use_synthetic

    cfg = load_config(ROOT / "configs/cifar100/bss/resnet32x4_resnet8x4.py",
                      ["data.batch_size=4", "data.val_batch_size=8", "data.num_workers=0",
                       "strategy.base_samples='any'", "strategy.steps=2"])
    use_synthetic(cfg)
    cfg["data"]["train"]["num_samples"] = 8
    cfg["data"]["val"]["num_samples"] = 8
    summary = Trainer(cfg, tmp_path / "bss", device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and summary["bss_samples"] == 8
    assert {"top1", "top5"} <= set(summary["final"])
