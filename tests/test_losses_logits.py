"""Tests for densekd.losses.logits: KD, DKD, LabelSmoothingKD (Tf-KD).

Reference values are written out independently with numpy loops over samples
and classes (no call into the code under test).
"""
import math

import numpy as np
import pytest
import torch

import densekd.losses.logits as logits_mod
from densekd.losses import DKD, KD, LabelSmoothingKD, TfKD
from densekd.registry import LOSSES


# --------------------------------------------------------------------------- numpy references
def np_softmax(row):
    row = np.asarray(row, dtype=np.float64)
    e = np.exp(row - row.max())
    return e / e.sum()


def np_kl(p, q):
    """KL(p || q) = sum_k p_k (log p_k - log q_k), with 0 log 0 = 0."""
    return sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q) if pk > 0)


def np_kd(s, t, T):
    s, t = s.numpy(), t.numpy()
    total = 0.0
    for i in range(s.shape[0]):
        total += np_kl(np_softmax(t[i] / T), np_softmax(s[i] / T))
    return total / s.shape[0] * T * T


def np_dkd_parts(s, t, y, T):
    """Per-sample TCKD, NCKD (both * T^2, not averaged) and the teacher's target probability."""
    s, t, y = s.numpy(), t.numpy(), y.numpy()
    tckd, nckd, pt_gt = [], [], []
    for i in range(s.shape[0]):
        ps, pt = np_softmax(s[i] / T), np_softmax(t[i] / T)
        g = int(y[i])
        bs = [ps[g], 1 - ps[g]]
        bt = [pt[g], 1 - pt[g]]
        tckd.append(np_kl(bt, bs) * T * T)
        others = [k for k in range(s.shape[1]) if k != g]
        qs = np.array([ps[k] for k in others]) / (1 - ps[g])
        qt = np.array([pt[k] for k in others]) / (1 - pt[g])
        nckd.append(np_kl(qt, qs) * T * T)
        pt_gt.append(pt[g])
    return np.array(tckd), np.array(nckd), np.array(pt_gt)


def np_tfkd(s, y, T, correct_prob, multiplier):
    s, y = s.numpy(), y.numpy()
    b, c = s.shape
    total = 0.0
    for i in range(b):
        virtual = np.full(c, (1 - correct_prob) / (c - 1))
        virtual[int(y[i])] = correct_prob
        p_t = np_softmax(virtual / T)
        log_p_s = np.log(np_softmax(s[i]))
        for k in range(c):
            total += p_t[k] * (math.log(p_t[k]) - log_p_s[k])
    return total / (b * c) * multiplier


@pytest.fixture
def logits():
    torch.manual_seed(0)
    s = torch.randn(5, 7, dtype=torch.float64) * 2
    t = torch.randn(5, 7, dtype=torch.float64) * 3
    y = torch.tensor([0, 3, 6, 2, 3])
    return s, t, y


# --------------------------------------------------------------------------- registration
def test_registered_and_exported():
    for name in ("KD", "DKD", "LabelSmoothingKD", "TfKD"):
        assert name in logits_mod.__all__
        assert name in LOSSES
    assert LOSSES.get("TfKD") is LabelSmoothingKD is TfKD
    # distiller-style build: unknown context kwargs are dropped
    kd = LOSSES.build(dict(type="KD", T=2), s_shapes=[torch.Size([2, 3])], t_shapes=[torch.Size([2, 3])],
                      num_classes=3, num_data=10)
    assert isinstance(kd, KD) and kd.T == 2.0
    for cls, paper in ((KD, "Hinton"), (DKD, "Decoupled Knowledge Distillation"),
                       (LabelSmoothingKD, "Label Smoothing")):
        doc = cls.__doc__
        assert doc and paper in doc and "T=" in doc and "Shapes" in doc


# --------------------------------------------------------------------------- KD
@pytest.mark.parametrize("T", [4.0, 1.0, 7.5])
def test_kd_matches_numpy(logits, T):
    s, t, _ = logits
    got = KD(T=T)(s, t)
    assert got.shape == ()
    assert got.item() == pytest.approx(np_kd(s, t, T), rel=1e-10, abs=1e-12)


def test_kd_default_temperature_is_4(logits):
    s, t, _ = logits
    assert KD().T == 4.0
    assert KD()(s, t).item() == pytest.approx(np_kd(s, t, 4.0), rel=1e-10)


def test_kd_zero_for_identical_logits_and_accepts_one_item_lists(logits):
    s, _, _ = logits
    assert KD()(s, s.clone()).item() == pytest.approx(0.0, abs=1e-12)
    s2, t2, _ = logits
    assert KD()([s2], [t2]).item() == pytest.approx(KD()(s2, t2).item())


def test_kd_gradients_reach_student_only(logits):
    s, t, _ = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    KD()(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_kd_rejects_dense_logits_pointing_to_pixelwise():
    with pytest.raises(ValueError, match="PixelWiseKD"):
        KD()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))


def test_kd_bad_inputs():
    with pytest.raises(ValueError, match="differ"):
        KD()(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="ONE"):
        KD()([torch.randn(2, 3), torch.randn(2, 3)], [torch.randn(2, 3), torch.randn(2, 3)])
    with pytest.raises(ValueError, match="T must be > 0"):
        KD(T=0)


# --------------------------------------------------------------------------- DKD
@pytest.mark.parametrize("alpha,beta,T", [(1.0, 8.0, 4.0), (0.5, 2.0, 1.0), (2.0, 0.0, 3.0)])
def test_dkd_matches_numpy(logits, alpha, beta, T):
    s, t, y = logits
    tckd, nckd, _ = np_dkd_parts(s, t, y, T)
    expected = alpha * tckd.mean() + beta * nckd.mean()
    got = DKD(alpha=alpha, beta=beta, T=T)(s, t, target=y)
    assert got.shape == ()
    assert got.item() == pytest.approx(expected, rel=1e-8)


def test_dkd_defaults_follow_mdistiller():
    d = DKD()
    assert (d.alpha, d.beta, d.T, d.warmup) == (1.0, 8.0, 4.0, 20.0)


def test_dkd_decomposes_kd(logits):
    """Paper Eq. (1): KD = TCKD + (1 - p_t^gt) * NCKD, per sample."""
    s, t, y = logits
    T = 2.0
    tckd, nckd, pt_gt = np_dkd_parts(s, t, y, T)
    kd_from_parts = (tckd + (1 - pt_gt) * nckd).mean()
    assert KD(T=T)(s, t).item() == pytest.approx(kd_from_parts, rel=1e-8)
    # and DKD with alpha=1, beta=1 is KD without the (1 - p_t^gt) NCKD weight
    assert DKD(alpha=1, beta=1, T=T)(s, t, target=y).item() == pytest.approx((tckd + nckd).mean(), rel=1e-8)


def test_dkd_warmup_counts_epochs_from_one_as_mdistiller(logits):
    """mdistiller: loss *= min(epoch / warmup, 1) with epoch = 1, 2, ... constant over each epoch. densekd's
    trainer passes the fractional epoch from 0, so the first step (epoch 0.0) must get 1 / warmup."""
    s, t, y = logits
    d = DKD()
    full = d(s, t, target=y).item()

    def mdistiller_factor(fractional_epoch, warmup=20):
        epoch_1_based = int(fractional_epoch) + 1  # the epoch mdistiller's loop is in
        return min(epoch_1_based / warmup, 1.0)

    assert d.warmup_factor(0.0) == 1 / 20  # the very first training step
    for e in (0.0, 0.5, 0.999, 1.0, 5.0, 18.5, 19.0, 20.0, 57.3):
        assert d(s, t, target=y, epoch=e).item() == pytest.approx(full * mdistiller_factor(e), rel=1e-10), e
    assert d(s, t, target=y, epoch=0.5).item() == pytest.approx(full / 20.0, rel=1e-10)
    assert d(s, t, target=y, epoch=19.0).item() == pytest.approx(full, rel=1e-10)  # 20th epoch: factor 1
    assert DKD(warmup=0)(s, t, target=y, epoch=0.0).item() == pytest.approx(full, rel=1e-10)
    # unrelated extras are ignored
    assert d(s, t, target=y, epoch=9.0, image=torch.zeros(1), index=torch.arange(5)).item() == \
        pytest.approx(full / 2, rel=1e-10)


def test_dkd_accepts_b_by_1_target(logits):
    s, t, y = logits
    assert DKD()(s, t, target=y[:, None]).item() == pytest.approx(DKD()(s, t, target=y).item())


def test_dkd_finite_with_extreme_logits():
    s = torch.tensor([[80.0, -80.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    t = torch.tensor([[-50.0, 60.0, 0.0], [1.0, 2.0, 3.0]])
    loss = DKD()(s, t, target=torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_dkd_gradients_reach_student_only(logits):
    s, t, y = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    DKD()(s, t, target=y, epoch=3.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_dkd_bad_inputs(logits):
    s, t, y = logits
    with pytest.raises(ValueError, match="target="):
        DKD()(s, t)
    with pytest.raises(ValueError, match="integer class indices"):
        DKD()(s, t, target=torch.softmax(s, 1))
    with pytest.raises(ValueError, match=r"lie in \[0, 7\)"):
        DKD()(s, t, target=torch.tensor([0, 1, 2, 3, 7]))
    with pytest.raises(ValueError, match="does not match"):
        DKD()(s, t, target=y[:3])
    with pytest.raises(ValueError, match="B x C"):
        DKD()(s[:, :, None, None], t[:, :, None, None], target=y)
    with pytest.raises(ValueError, match="warmup"):
        DKD(warmup=-1)


# --------------------------------------------------------------------------- Tf-KD
@pytest.mark.parametrize("T,p,m", [(20.0, 0.99, 100.0), (2.0, 0.9, 1.0)])
def test_tfkd_matches_numpy(logits, T, p, m):
    s, _, y = logits
    got = LabelSmoothingKD(T=T, correct_prob=p, multiplier=m)(s, None, target=y)
    assert got.item() == pytest.approx(np_tfkd(s, y, T, p, m), rel=1e-8)


def test_tfkd_ignores_teacher_and_builds_by_alias(logits):
    s, t, y = logits
    loss = LOSSES.build(dict(type="TfKD"), num_classes=7)
    assert (loss.T, loss.correct_prob, loss.multiplier) == (20.0, 0.99, 100.0)
    assert loss(s, t, target=y).item() == pytest.approx(loss(s, None, target=y).item())


def test_tfkd_virtual_teacher_rows():
    loss = LabelSmoothingKD(correct_prob=0.9)
    p = loss.virtual_teacher(torch.zeros(2, 5), torch.tensor([1, 4]))
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert p[0, 1] == pytest.approx(0.9) and p[1, 4] == pytest.approx(0.9)
    assert p[0, 0] == pytest.approx(0.025)


def test_tfkd_gradient_and_errors(logits):
    s, _, y = logits
    s = s.clone().requires_grad_(True)
    LabelSmoothingKD()(s, None, target=y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="target="):
        LabelSmoothingKD()(s, None)
    with pytest.raises(ValueError, match="correct_prob"):
        LabelSmoothingKD(correct_prob=1.5)


# --------------------------------------------------------------------------- CS-KD
def test_cskd_matches_the_written_out_formula_and_only_the_anchor_logits_get_gradients(logits):
    from densekd.losses import CSKD

    s, t, _ = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    T = 4.0
    # T^2 * sum_b KL(softmax(t_b / T) || softmax(s_b / T)) / B, written out element by element
    sn, tn = s.detach().numpy(), t.detach().numpy()
    total = 0.0
    for i in range(sn.shape[0]):
        q, p = np_softmax(tn[i] / T), np_softmax(sn[i] / T)
        total += sum(q[k] * (math.log(q[k]) - math.log(p[k])) for k in range(sn.shape[1]))
    expected = T * T * total / sn.shape[0]
    loss = CSKD()(s, t)
    assert math.isclose(float(loss.detach()), expected, rel_tol=1e-9)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    assert "CSKD" in LOSSES and "Yun" in CSKD.__doc__ and CSKD.teacher_free
    with pytest.raises(ValueError, match="ClassPairDataset"):
        CSKD()(s, None)


# --------------------------------------------------------------------------- logit standardisation (Sun et al. 2024)
def np_zscore(row, eps=1e-7):
    """(z - mean) / (unbiased std + eps), written out."""
    row = [float(v) for v in row]
    c = len(row)
    mean = sum(row) / c
    std = math.sqrt(sum((v - mean) ** 2 for v in row) / (c - 1))
    return np.array([(v - mean) / (std + eps) for v in row])


def test_standardize_logits_is_the_written_out_zscore(logits):
    from densekd.losses._utils import standardize_logits

    s, _, _ = logits
    got = standardize_logits(s)
    for i in range(s.shape[0]):
        np.testing.assert_allclose(got[i].numpy(), np_zscore(s[i].numpy()), rtol=1e-12, atol=1e-12)
    # dense logits: one z-score per pixel over the channels
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    gd = standardize_logits(x)
    for b in range(2):
        for h in range(3):
            for w in range(4):
                np.testing.assert_allclose(gd[b, :, h, w].numpy(), np_zscore(x[b, :, h, w].numpy()), rtol=1e-12)
    with pytest.raises(ValueError, match="at least 2 classes"):
        standardize_logits(torch.randn(3, 1))


@pytest.mark.parametrize("T", [2.0, 4.0])
def test_kd_logit_std_matches_formula_and_ignores_logit_scale(logits, T):
    s, t, _ = logits
    zs = torch.tensor(np.stack([np_zscore(r) for r in s.numpy()]))
    zt = torch.tensor(np.stack([np_zscore(r) for r in t.numpy()]))
    loss = KD(T=T, logit_std=True)
    assert loss(s, t).item() == pytest.approx(np_kd(zs, zt, T), rel=1e-9)
    # the point of the method: scaling / shifting either network's logits changes nothing
    assert loss(3.0 * s + 1.5, 0.5 * t - 2.0).item() == pytest.approx(loss(s, t).item(), rel=1e-6)
    assert KD(T=T)(3.0 * s, t).item() != pytest.approx(KD(T=T)(s, t).item(), rel=1e-3)
    assert KD().logit_std is False


def test_dkd_logit_std_matches_formula(logits):
    s, t, y = logits
    zs = torch.tensor(np.stack([np_zscore(r) for r in s.numpy()]))
    zt = torch.tensor(np.stack([np_zscore(r) for r in t.numpy()]))
    tckd, nckd, _ = np_dkd_parts(zs, zt, y, 2.0)
    got = DKD(alpha=9.0, beta=72.0, T=2.0, logit_std=True)(s, t, target=y)
    assert got.item() == pytest.approx(9.0 * tckd.mean() + 72.0 * nckd.mean(), rel=1e-8)


@pytest.mark.parametrize("cls,kw", [(KD, {}), (DKD, {}), ("DIST", {})])
def test_logit_std_gradients_reach_student_only(logits, cls, kw):
    from densekd.losses import DIST

    cls = DIST if cls == "DIST" else cls
    s, t, y = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    cls(logit_std=True, **kw)(s, t, target=y, epoch=3.0).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None


# --------------------------------------------------------------------------- DIST
def np_pearson(u, v, eps=1e-8):
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    du, dv = [a - mu for a in u], [b - mv for b in v]
    num = sum(a * b for a, b in zip(du, dv))
    return num / (math.sqrt(sum(a * a for a in du)) * math.sqrt(sum(b * b for b in dv)) + eps)


def np_dist(s, t, T, beta, gamma):
    s, t = s.numpy(), t.numpy()
    b, c = s.shape
    ps = [list(np_softmax(s[i] / T)) for i in range(b)]
    pt = [list(np_softmax(t[i] / T)) for i in range(b)]
    inter = 1 - sum(np_pearson(ps[i], pt[i]) for i in range(b)) / b
    intra = 1 - sum(np_pearson([ps[i][k] for i in range(b)], [pt[i][k] for i in range(b)]) for k in range(c)) / c
    return T * T * (beta * inter + gamma * intra)


@pytest.mark.parametrize("T,beta,gamma", [(1.0, 1.0, 1.0), (4.0, 2.0, 2.0), (2.0, 0.5, 3.0)])
def test_dist_matches_written_out_pearson(logits, T, beta, gamma):
    from densekd.losses import DIST

    s, t, _ = logits
    got = DIST(beta=beta, gamma=gamma, T=T)(s, t)
    assert got.shape == ()
    assert got.item() == pytest.approx(np_dist(s, t, T, beta, gamma), rel=1e-9)
    # inter and intra separately
    only_inter = DIST(beta=1, gamma=0, T=T)(s, t).item()
    only_intra = DIST(beta=0, gamma=1, T=T)(s, t).item()
    assert beta * only_inter + gamma * only_intra == pytest.approx(got.item(), rel=1e-9)
    # logit standardisation option: DIST on the z-scored logits
    zs = torch.tensor(np.stack([np_zscore(r) for r in s.numpy()]))
    zt = torch.tensor(np.stack([np_zscore(r) for r in t.numpy()]))
    assert DIST(beta=beta, gamma=gamma, T=T, logit_std=True)(s, t).item() == \
        pytest.approx(np_dist(zs, zt, T, beta, gamma), rel=1e-9)


def test_dist_properties_defaults_and_errors(logits):
    from densekd.losses import DIST

    s, t, _ = logits
    d = DIST()
    assert (d.beta, d.gamma, d.T) == (1.0, 1.0, 1.0)
    assert d(s, s.clone()).item() == pytest.approx(0.0, abs=1e-6)  # identical predictions (eps in the norms)
    # Pearson is invariant to affine maps of the probabilities, KL is not: a student whose probabilities mix the
    # teacher's with the uniform distribution has (almost) zero DIST loss but a clear KD loss
    p_t = torch.softmax(t, dim=1)
    s_mixed = torch.log(0.5 * p_t + 0.5 / t.shape[1])
    assert d(s_mixed, t).item() == pytest.approx(0.0, abs=1e-5)
    assert KD(T=1)(s_mixed, t).item() > 0.1
    assert "DIST" in LOSSES and "Stronger Teacher" in DIST.__doc__ and "Shapes" in DIST.__doc__
    with pytest.raises(ValueError, match="DenseDIST"):
        d(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        d(s[:1], t[:1])
    with pytest.raises(ValueError, match="T must be > 0"):
        DIST(T=0)


def test_dist_gradients_reach_student_only(logits):
    from densekd.losses import DIST

    s, t, _ = logits
    s = s.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    DIST(beta=2, gamma=2, T=4)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
