"""MLKD (Jin et al., CVPR 2023) and ViewCE (densekd.losses.logits) against their equations written out with numpy
loops over samples and classes, the release's mask factors and strong-view slip, logit standardisation,
gradients and errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from densekd.losses import MLKD, ViewCE
from densekd.losses.base import ExtraViews, TeacherFree, capabilities, check_capabilities
from densekd.losses.logits import mlkd_mask_fractions
from densekd.registry import LOSSES


def np_softmax(row):
    e = np.exp(row - row.max())
    return e / e.sum()


def np_probs(z, T):
    return np.stack([np_softmax(r / T) for r in z])


def np_kd(s, t, T):
    total = 0.0
    for i in range(s.shape[0]):
        p, q = np_softmax(t[i] / T), np_softmax(s[i] / T)
        total += sum(p[k] * (math.log(p[k]) - math.log(q[k])) for k in range(s.shape[1]))
    return total / s.shape[0] * T * T


def np_gram_loss(a, b):
    """sum_ij (a_ij - b_ij)^2 by loops."""
    return sum((a[i, j] - b[i, j]) ** 2 for i in range(a.shape[0]) for j in range(a.shape[1]))


def np_bc(s, t, T):
    ps, pt = np_probs(s, T), np_probs(t, T)
    b = s.shape[0]
    gs = np.array([[sum(ps[i, k] * ps[j, k] for k in range(s.shape[1])) for j in range(b)] for i in range(b)])
    gt = np.array([[sum(pt[i, k] * pt[j, k] for k in range(s.shape[1])) for j in range(b)] for i in range(b)])
    return np_gram_loss(gs, gt) / b


def np_cc(s, t, T):
    ps, pt = np_probs(s, T), np_probs(t, T)
    c = s.shape[1]
    gs = np.array([[sum(ps[n, i] * ps[n, j] for n in range(s.shape[0])) for j in range(c)] for i in range(c)])
    gt = np.array([[sum(pt[n, i] * pt[n, j] for n in range(s.shape[0])) for j in range(c)] for i in range(c)])
    return np_gram_loss(gs, gt) / c


def np_zscore(z):
    out = []
    for r in z:
        mean = r.mean()
        std = math.sqrt(sum((v - mean) ** 2 for v in r) / (len(r) - 1))
        out.append((r - mean) / (std + 1e-7))
    return np.array(out)


def np_masks(t_w):
    p = np_probs(t_w, 1.0)
    conf = p.max(axis=1)
    per_class = p.sum(axis=0)
    return np.mean(conf <= np.percentile(conf, 50)), np.mean(per_class <= np.percentile(per_class, 50))


def np_mlkd(s_w, t_w, s_s, t_s, temps, weak_in_strong=2, mask=True, ls=False):
    """The release's sum: masked weak-view KD at every T, strong-view KD (its last `weak_in_strong` terms on the weak
    logits), masked weak-view class and batch terms; z-scores for the KD terms only with ls."""
    m, c = np_masks(t_w) if mask else (1.0, 1.0)
    kw_s, kw_t, ks_s, ks_t = (np_zscore(z) for z in (s_w, t_w, s_s, t_s)) if ls else (s_w, t_w, s_s, t_s)
    head = len(temps) - weak_in_strong
    loss = 0.0
    for k, T in enumerate(temps):
        loss += m * np_kd(kw_s, kw_t, T)
        loss += np_kd(ks_s, ks_t, T) if k < head else np_kd(kw_s, kw_t, T)
        loss += c * np_cc(s_w, t_w, T) + m * np_bc(s_w, t_w, T)
    return loss


@pytest.fixture
def views():
    g = torch.Generator().manual_seed(0)
    s_w, t_w, s_s, t_s = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 3 for _ in range(4))
    return s_w, t_w, s_s, t_s


def run(loss, s_w, t_w, s_s, t_s, key="image_strong"):
    return loss(s_w, t_w, views={key: (s_s, t_s)})


@pytest.mark.parametrize("kw", [dict(), dict(weak_in_strong=0), dict(confidence_mask=False),
                                dict(temperatures=(2.0, 3.0, 5.0, 2.0, 6.0), logit_std=True),
                                dict(temperatures=(1.0, 7.0), weak_in_strong=1)])
def test_mlkd_matches_the_written_out_release_sum(views, kw):
    s_w, t_w, s_s, t_s = views
    got = run(MLKD(**kw), s_w, t_w, s_s, t_s).item()
    want = np_mlkd(*(x.numpy() for x in views), temps=kw.get("temperatures", (4.0, 3.0, 5.0, 2.0, 6.0)),
                   weak_in_strong=kw.get("weak_in_strong", 2), mask=kw.get("confidence_mask", True),
                   ls=kw.get("logit_std", False))
    assert got == pytest.approx(want, rel=1e-6)  # computed in fp32


def test_mlkd_defaults_follow_the_release():
    m = MLKD()
    assert m.temperatures == (4.0, 3.0, 5.0, 2.0, 6.0) and m.weak_in_strong == 2
    assert m.confidence_mask and not m.logit_std and m.extra_views == ("image_strong",)
    assert MLKD(view="strong").extra_views == ("strong",)
    assert capabilities(MLKD) == [ExtraViews] and set(capabilities(ViewCE)) == {TeacherFree, ExtraViews}
    check_capabilities(MLKD(view="x"))
    check_capabilities(ViewCE)


def test_mask_fractions_are_the_shares_at_or_below_the_median():
    # teacher confidences 0.9, 0.8, 0.7, 0.6 -> median 0.75 -> 2 of 4 at or below; odd batch: 3 of 5
    def logits_with_conf(confs, classes=4):
        rows = []
        for p in confs:
            q = np.full(classes, (1 - p) / (classes - 1))
            q[0] = p
            rows.append(np.log(q))
        return torch.tensor(np.array(rows))

    m, _ = mlkd_mask_fractions(logits_with_conf([0.9, 0.8, 0.7, 0.6]))
    assert m.item() == pytest.approx(0.5)
    m, _ = mlkd_mask_fractions(logits_with_conf([0.9, 0.8, 0.7, 0.6, 0.5]))
    assert m.item() == pytest.approx(0.6)
    g = torch.Generator().manual_seed(3)
    t = torch.randn(7, 9, generator=g, dtype=torch.float64)
    m, c = mlkd_mask_fractions(t)
    assert (m.item(), c.item()) == pytest.approx(np_masks(t.numpy()))


def test_the_release_slip_puts_two_strong_terms_on_the_weak_view(views):
    s_w, t_w, s_s, t_s = views
    slip, clean = MLKD(), MLKD(weak_in_strong=0)
    # with identical views the two forms agree; with different views they do not
    assert run(slip, s_w, t_w, s_w, t_w).item() == pytest.approx(run(clean, s_w, t_w, s_w, t_w).item(), rel=1e-6)
    assert run(slip, s_w, t_w, s_s, t_s).item() != pytest.approx(run(clean, s_w, t_w, s_s, t_s).item(), rel=1e-3)
    # the strong view enters only through its KD terms at 4, 3, 5
    only_kd = sum(np_kd(s_s.numpy(), t_s.numpy(), T) for T in (4.0, 3.0, 5.0))
    base = run(slip, s_w, t_w, s_w * 0 + s_s.mean(), t_s * 0 + t_s.mean()).item()  # uniform strong predictions
    assert run(slip, s_w, t_w, s_s, t_s).item() == pytest.approx(base + only_kd, rel=1e-5)


def test_mlkd_gradients_reach_both_student_views_never_the_teacher(views):
    s_w, t_w, s_s, t_s = (x.clone().requires_grad_(True) for x in views)
    loss = MLKD(logit_std=True)(s_w, t_w, views={"image_strong": (s_s, t_s)})
    loss.backward()
    assert s_w.grad is not None and s_w.grad.abs().sum() > 0
    assert s_s.grad is not None and s_s.grad.abs().sum() > 0
    assert t_w.grad is None and t_s.grad is None


def test_mlkd_errors(views):
    s_w, t_w, s_s, t_s = views
    with pytest.raises(ValueError, match="views"):
        MLKD()(s_w, t_w)
    with pytest.raises(ValueError, match="image_strong"):
        MLKD()(s_w, t_w, views={"other": (s_s, t_s)})
    with pytest.raises(ValueError, match="same samples"):
        MLKD()(s_w, t_w, views={"image_strong": (s_s[:3], t_s[:3])})
    with pytest.raises(ValueError, match="B x C"):
        MLKD()(s_w[:, :, None, None], t_w[:, :, None, None], views={"image_strong": (s_s, t_s)})
    with pytest.raises(ValueError, match="temperature"):
        MLKD(temperatures=(4.0, 0.0))
    with pytest.raises(ValueError, match="weak_in_strong"):
        MLKD(weak_in_strong=6)
    with pytest.raises(ValueError, match="at least one"):
        MLKD(temperatures=())
    with pytest.raises(Exception, match="no parameter 'T'.*temperatures"):
        LOSSES.build(dict(type="MLKD", T=4))


def test_view_ce_is_the_written_out_cross_entropy_on_the_view():
    g = torch.Generator().manual_seed(1)
    s, s_view = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 1, 2])
    got = ViewCE()(s, None, views={"image_strong": (s_view, None)}, target=y).item()
    want = -np.mean([math.log(np_softmax(s_view[i].numpy())[int(y[i])]) for i in range(5)])
    assert got == pytest.approx(want, rel=1e-12)
    x = s_view.clone().requires_grad_(True)
    ViewCE(view="v")(s, None, views={"v": (x, None)}, target=y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="image_strong"):
        ViewCE()(s, None, views={}, target=y)
    with pytest.raises(ValueError, match="class labels"):
        ViewCE()(s, None, views={"image_strong": (s_view, None)})
