"""IFM (Passalis, Tzelepi & Tefas, CVPR 2020): the divergence against explicit loops, the critical-period
weights per epoch (also through the distiller's epoch), gradients to the student only, layer matching, and
the shipped configs and auxiliary-network pipeline."""
import math

import pytest
import torch

from densekd.config import load_config
from densekd.distill.distiller import Distiller
from densekd.engine.builder import use_synthetic
from densekd.engine.trainer import Trainer
from densekd.losses import IFM
from densekd.registry import LOSSES, MODELS, TASKS
from tests.conftest import ROOT


def loop_conditional(f, kernel="cosine", eps=1e-6):
    """P[i][j] = K_ij / sum_k K_ik, written out sample by sample."""
    rows = [[float(v) for v in x.reshape(-1)] for x in f]
    b = len(rows)

    def k(a, c):
        if kernel == "cosine":
            na = math.sqrt(sum(v * v for v in a)) + eps
            nc = math.sqrt(sum(v * v for v in c)) + eps
            return (sum((x / na) * (y / nc) for x, y in zip(a, c)) + 1.0) / 2.0
        d2 = sum((x - y) ** 2 for x, y in zip(a, c))
        return 1.0 / (1.0 + math.sqrt(d2 + eps))

    kk = [[k(rows[i], rows[j]) for j in range(b)] for i in range(b)]
    return [[kk[i][j] / sum(kk[i]) for j in range(b)] for i in range(b)]


def loop_jeffreys(f_t, f_s, kernel="cosine"):
    """sum_ij (Pt - Ps)(log Pt - log Ps) = KL(Pt||Ps) + KL(Ps||Pt), summed over the B x B pairs."""
    pt, ps = loop_conditional(f_t, kernel), loop_conditional(f_s, kernel)
    b = len(pt)
    kl_ts = sum(pt[i][j] * math.log(pt[i][j] / ps[i][j]) for i in range(b) for j in range(b))
    kl_st = sum(ps[i][j] * math.log(ps[i][j] / pt[i][j]) for i in range(b) for j in range(b))
    return kl_ts + kl_st


def feats(seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g).double() for s in shapes]


def test_divergence_matches_explicit_loops_for_both_kernels_and_reductions():
    s, t = feats(0, (5, 7), (5, 2, 2, 3))  # widths and shapes differ: only the batch relations are compared
    want = loop_jeffreys(t, s)
    assert IFM(reduction="sum")(s, t).item() == pytest.approx(want, rel=1e-9)
    assert IFM()(s, t).item() == pytest.approx(want / 25, rel=1e-9)  # the default: mean over the B^2 pairs
    combined = loop_jeffreys(t, s) + loop_jeffreys(t, s, kernel="student_t")
    assert IFM(kernel="combined", reduction="sum")(s, t).item() == pytest.approx(combined, rel=1e-9)
    assert IFM()(t, t).item() == pytest.approx(0.0, abs=1e-15)
    assert IFM()(s, 3.0 * s).item() == pytest.approx(0.0, abs=1e-12)  # the cosine kernel ignores the scale


def test_layer_weights_follow_the_critical_period_schedule_per_epoch():
    loss = IFM(alpha_init=100.0, gamma=0.7)
    assert loss.layer_weights(3, 0.0) == [100.0, 100.0, 1.0]
    assert loss.layer_weights(3, 0.99) == [100.0, 100.0, 1.0]  # constant within an epoch
    assert loss.layer_weights(3, 1.0) == pytest.approx([70.0, 70.0, 1.0])
    assert loss.layer_weights(3, 3.5) == pytest.approx([100 * 0.7 ** 3, 100 * 0.7 ** 3, 1.0])
    assert loss.layer_weights(3, None) == [100.0, 100.0, 1.0]  # no epoch given: epoch 0
    s, t = feats(1, (6, 4), (6, 8), (6, 3)), feats(2, (6, 5), (6, 2), (6, 9))
    per_layer = [loop_jeffreys(b, a) / 36 for a, b in zip(s, t)]
    for epoch in (0.0, 2.0, 10.5):
        w = 100 * 0.7 ** math.floor(epoch)
        want = w * per_layer[0] + w * per_layer[1] + per_layer[2]
        assert IFM(alpha_init=100.0, gamma=0.7)(s, t, epoch=epoch).item() == pytest.approx(want, rel=1e-9)


def test_distiller_passes_the_epoch_and_only_the_student_gets_gradients():
    torch.manual_seed(0)
    student, teacher = MODELS.build(dict(type="resnet8")), MODELS.build(dict(type="resnet14"))
    x = torch.randn(6, 3, 32, 32)
    d = Distiller(student, TASKS.build(dict(type="classification")), [teacher],
                  [dict(type="IFM", student="feats[1:]", teacher="feats[1:]", alpha_init=10, gamma=0.5, weight=3)],
                  probe=x[:2])
    batch = {"image": x, "target": torch.arange(6)}
    values = {}
    for epoch in (0.0, 1.5, 4.0):
        d.epoch = epoch
        _, losses = d(batch)
        values[epoch] = losses["IFM"]
    loss = d.losses["IFM"]
    d.epoch = 0.0
    _, losses = d(batch)
    s_taps = d.s_taps.collect(d.terms[0].s_paths, None)
    t_taps = d.t_taps[0].collect(d.terms[0].t_paths, None)
    per = [loss.divergence(loss.conditionals(t), loss.conditionals(s)).item() for s, t in zip(s_taps, t_taps)]
    for epoch, value in values.items():
        w = 10 * 0.5 ** math.floor(epoch)
        assert value.item() == pytest.approx(3 * (w * sum(per[:-1]) + per[-1]), rel=1e-4), epoch
    losses["IFM"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_teacher_side_carries_no_gradient():
    s, t = [x.float().requires_grad_() for x in feats(3, (4, 6))], [x.float().requires_grad_() for x in feats(4, (4, 3))]
    IFM()(s, t).backward()
    assert s[0].grad is not None and s[0].grad.abs().sum() > 0 and t[0].grad is None


def test_divergence_matching_pairs_each_student_layer_with_the_closest_teacher_layer_and_is_kept():
    a, c = feats(5, (8, 6), (8, 3, 2, 2))
    s = [2.0 * c.reshape(8, -1), a * 0.5]  # the student's layers are the teacher's, in the other order
    shapes = [x.shape for x in s], [a.shape, c.shape]
    loss = IFM(*shapes, match="divergence")
    assert loss.matched.tolist() == [-1, -1]  # not yet measured
    value = loss(s, [a, c])
    assert loss.matched.tolist() == [1, 0] and value.item() == pytest.approx(0.0, abs=1e-12)
    explicit = IFM(*shapes, match=[1, 0])
    other = feats(6, (8, 12), (8, 6))
    assert explicit(other, [a, c]).item() == pytest.approx(loss(other, [a, c]).item())  # no refit on later batches
    restored = IFM(*shapes, match="divergence")
    restored.load_state_dict(loss.state_dict())  # what the checkpoint carries: a resumed run keeps the matching
    restored(other, [c.reshape(8, -1), a])
    assert restored.matched.tolist() == [1, 0]
    assert IFM(*shapes)(s, [a, c]).item() > 0  # in order, the layers differ
    with pytest.raises(ValueError, match="match lists 1 teacher taps for 2 student taps"):
        IFM(*shapes, match=[0])
    with pytest.raises(ValueError, match="B >= 2"):
        IFM()(torch.randn(1, 4), torch.randn(1, 4))


def test_registered_and_every_benchmark_pair_has_an_ifm_config():
    assert "IFM" in LOSSES.names()
    pairs = sorted(p.name for p in (ROOT / "configs/cifar100/distill").iterdir())
    assert len(pairs) == 7 and all((ROOT / "configs/cifar100/distill" / p / "ifm.py").is_file() for p in pairs)


def _small(cfg):
    use_synthetic(cfg)
    cfg["data"]["train"]["num_samples"] = 16
    cfg["data"]["val"]["num_samples"] = 8
    return cfg


@pytest.mark.parametrize("name", ["distill/resnet56-resnet20/ifm", "ifm/resnet32x4-ShuffleV1_matched"])
def test_ifm_configs_train_a_few_iterations(name, tmp_path):
    cfg = _small(load_config(ROOT / f"configs/cifar100/{name}.py", ["data.batch_size=8", "data.val_batch_size=8",
                                                                   "data.num_workers=0", "train.log_interval=1"]))
    trainer = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=3)
    before = {k: v.clone() for k, v in trainer.strategy.student.state_dict().items()}
    summary = trainer.train()
    assert summary["iters"] == 3 and summary["distill"] == ["IFM"]
    assert any(not torch.equal(v, before[k]) for k, v in trainer.strategy.student.state_dict().items()
               if v.is_floating_point())
    matched = trainer.strategy.distiller.losses["IFM"].matched
    assert (matched >= 0).all() and matched.numel() == 4
    log = (tmp_path / "w/metrics.jsonl").read_text()
    assert '"loss/IFM"' in log


def test_auxiliary_pipeline_hands_the_teacher_to_the_auxiliary_and_the_auxiliary_to_the_student(tmp_path):
    from densekd.engine.builder import build_teachers
    from densekd.engine.checkpoint import load_checkpoint, model_state_from
    from densekd.pipelines import PipelineRunner, load_pipeline

    work = tmp_path / "ifm"
    shrink = ["data.batch_size=2", "data.val_batch_size=4", "data.train.num_samples=4", "data.val.num_samples=4",
              "data.num_workers=0"]
    pipe = load_pipeline(ROOT / "configs/pipelines/cifar100_ifm_auxiliary.py", synthetic=True, work_dir=str(work),
                         cli_options=shrink)
    assert pipe.names == ["teacher", "auxiliary", "student"]
    t, a, s = (pipe.stage(n).cfg for n in pipe.names)
    assert (t["model"]["type"], a["model"]["type"], s["model"]["type"]) == ("resnet32x4", "resnet8x4", "resnet8")
    assert a["teacher"]["checkpoint"] == str(work / "teacher/checkpoints/best.pth")
    assert s["teacher"]["model"]["type"] == "resnet8x4"
    assert s["teacher"]["checkpoint"] == str(work / "auxiliary/checkpoints/best.pth")
    assert a["distill"][0]["student"] == "feats[-1]" and s["distill"][0]["student"] == "feats[1:]"
    results = PipelineRunner(pipe, device="cpu", max_iters=1, log=lambda _msg: None).run()
    assert [(r.name, r.status) for r in results] == [("teacher", "trained"), ("auxiliary", "trained"),
                                                     ("student", "trained")]
    (teacher,), _, _ = build_teachers(load_config(work / "student" / "config.py"), synthetic=False)
    want = model_state_from(load_checkpoint(work / "auxiliary/checkpoints/best.pth"))
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in want.items())


@pytest.mark.parametrize("kernel", ["cosine", "student_t"])
def test_conditionals_gradient_equals_the_row_normalised_formula(kernel):
    """The kernels are built from the B x B Gram matrix (its normalisation folded onto it, a one-product
    symmetric backward): values and gradients equal autograd through the row-wise formula (rows divided by
    ||f_i|| + eps, then f f^T); a zero row stays zero, a row with a NaN counts as zero."""
    from densekd.losses.relations import cosine_conditional, student_t_conditional
    fn = cosine_conditional if kernel == "cosine" else student_t_conditional
    f0 = feats(5, (6, 3, 2, 2))[0]
    f0[2] = 0.0
    up = torch.randn(6, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    ours, ref = f0.clone().requires_grad_(True), f0.clone().requires_grad_(True)
    (fn(ours) * up).sum().backward()
    x = ref.reshape(6, -1)
    if kernel == "cosine":
        x = x / (x.norm(dim=1, keepdim=True) + 1e-6)
        k = (x @ x.t() + 1.0) / 2.0
    else:
        k = 1.0 / (1.0 + torch.sqrt((x[:, None] - x[None]).pow(2).sum(-1) + 1e-6))
    p = k / k.sum(dim=1, keepdim=True)
    torch.testing.assert_close(fn(f0), p.detach(), rtol=1e-10, atol=1e-12)
    (p * up).sum().backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-8, atol=1e-10)
    if kernel == "cosine":
        bad = f0.clone()
        bad[1, 0, 0, 0] = float("nan")
        zeroed = f0.clone()
        zeroed[1] = 0.0
        torch.testing.assert_close(cosine_conditional(bad), cosine_conditional(zeroed), rtol=0, atol=0)


def test_symmetric_gram_backward_is_autograds():
    from densekd.losses._utils import gram
    f = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram, (f,))
    assert not gram(f.detach()).requires_grad
