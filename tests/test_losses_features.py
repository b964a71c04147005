"""Tests for densekd.losses.features (FitNet, AT, NST, OFD, VID), densekd.losses.two_stage (FT, AB, FSP) and the connectors.

Every numeric test writes the reference equation out independently (explicit loops / numpy) on small
seeded tensors.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import densekd.losses as losses_pkg
from densekd.nn.connectors import ConvReg, Paraphraser, Translator
from densekd.losses import AB, AT, FSP, FT, NST, OFD, VID, FitNet
from densekd.losses.features import ofd_margin
from densekd.registry import LOSSES

ALL = ["FitNet", "AT", "FT", "NST", "AB", "OFD", "FSP", "VID"]


def rand(*shape, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def shapes(*tensors):
    return [t.shape for t in tensors]


def double(module):
    return module.double()


def np_(t):
    return t.detach().cpu().numpy().astype(np.float64)


def manual_bn_train(x):
    """Batch norm in train mode with weight 1 / bias 0 (fresh BN), numpy."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)  # biased
    return (x - mean) / np.sqrt(var + 1e-5)


def pool_blocks(x, k):
    """Average pool non-overlapping k x k blocks (numpy)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // k, k, w // k, k).mean(axis=(3, 5))


# --------------------------------------------------------------------------------------------------------
# registry / exports
# --------------------------------------------------------------------------------------------------------
def test_exported_and_registered():
    from densekd.losses import features, two_stage
    for name in ALL:
        module = two_stage if name in ("FT", "AB", "FSP") else features
        assert name in module.__all__
        assert getattr(losses_pkg, name) is getattr(module, name)
        assert LOSSES.get(name) is getattr(module, name)
        assert getattr(module, name).__doc__ and "20" in getattr(module, name).__doc__  # paper year


@pytest.mark.parametrize("name", ALL)
def test_build_from_registry_with_distiller_defaults(name):
    torch.manual_seed(0)
    s = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    t = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    loss = LOSSES.build(dict(type=name), s_shapes=shapes(*s), t_shapes=shapes(*t), num_classes=10, num_data=50)
    value = loss(s, t, target=torch.zeros(2, dtype=torch.long), index=torch.arange(2))
    assert value.dim() == 0 and torch.isfinite(value)


# --------------------------------------------------------------------------------------------------------
# gradients: student + own params, never the teacher; layer-count errors
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_student_and_params_not_teacher(name):
    torch.manual_seed(1)
    s = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 5, 4, 4, requires_grad=True)]
    if name == "FSP":
        t = [torch.randn(2, 3, 8, 8, requires_grad=True), torch.randn(2, 5, 4, 4, requires_grad=True)]
    else:
        t = [torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 4, 4, 4, requires_grad=True)]
    loss_mod = LOSSES.build(dict(type=name), s_shapes=shapes(*s), t_shapes=shapes(*t))
    loss = loss_mod(s, t)
    loss.backward()
    for x in s:
        assert x.grad is not None and x.grad.abs().sum() > 0
    for x in t:
        assert x.grad is None
    frozen = {id(p) for p in getattr(loss_mod, "separate_parameters", lambda: [])()}
    trainable = [p for p in loss_mod.parameters() if id(p) not in frozen]
    if name in ("FitNet", "FT", "AB", "OFD", "VID"):
        assert trainable
    for p in trainable:
        assert p.grad is not None, f"{name}: parameter of shape {tuple(p.shape)} got no gradient"
    for p in getattr(loss_mod, "separate_parameters", lambda: [])():
        assert p.grad is None


@pytest.mark.parametrize("name", ALL)
def test_mismatched_number_of_layers_raises(name):
    s = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)]
    t = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)]
    loss_mod = LOSSES.build(dict(type=name), s_shapes=shapes(*s), t_shapes=shapes(*t))
    with pytest.raises(ValueError, match="layer|taps"):
        loss_mod(s, t[:1])
    if name in ("FitNet", "FT", "AB", "OFD", "VID"):
        with pytest.raises(ValueError, match="built for 2 layer"):
            loss_mod(s[:1], t[:1])
        with pytest.raises(ValueError, match="s_shapes"):
            LOSSES.build(dict(type=name))
        with pytest.raises(ValueError, match="same number of layers"):
            LOSSES.build(dict(type=name), s_shapes=shapes(*s), t_shapes=shapes(*t)[:1])


@pytest.mark.parametrize("name", ALL)
def test_non_4d_input_raises(name):
    s, t = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    loss_mod = LOSSES.build(dict(type=name), s_shapes=[s.shape, s.shape], t_shapes=[t.shape, t.shape])
    with pytest.raises(ValueError, match="4-D"):
        loss_mod([torch.randn(2, 4), s], [torch.randn(2, 4), t])


# --------------------------------------------------------------------------------------------------------
# FitNet
# --------------------------------------------------------------------------------------------------------
def test_fitnet_value_against_conv_bn_relu_mse():
    s, t = rand(2, 3, 4, 4, seed=1, requires_grad=True), rand(2, 5, 4, 4, seed=2)
    loss_mod = double(FitNet(s_shapes=[s.shape], t_shapes=[t.shape]))
    reg = loss_mod.regressors[0]
    w = np_(reg.conv.weight)[:, :, 0, 0]  # 5 x 3
    b = np_(reg.conv.bias)
    x = np_(s)
    conv = np.zeros((2, 5, 4, 4))
    for n in range(2):
        for o in range(5):
            for i in range(3):
                conv[n, o] += w[o, i] * x[n, i]
            conv[n, o] += b[o]
    pred = np.maximum(manual_bn_train(conv), 0.0)
    expected = ((pred - np_(t)) ** 2).sum() / pred.size
    got = loss_mod(s, t)  # a single tensor (not a list) is accepted
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("s_hw,t_hw,kind,kernel", [
    ((8, 8), (4, 4), nn.Conv2d, (3, 3)),           # 2x larger: stride-2 conv
    ((4, 4), (8, 8), nn.ConvTranspose2d, (4, 4)),  # 2x smaller: transposed conv
    ((7, 6), (4, 4), nn.Conv2d, (4, 3)),           # generic: (1 + dH) x (1 + dW) conv
    ((4, 4), (4, 4), nn.Conv2d, (1, 1)),
])
def test_convreg_spatial_rules(s_hw, t_hw, kind, kernel):
    s, t = torch.randn(2, 3, *s_hw), torch.randn(2, 6, *t_hw)
    reg = ConvReg(s.shape, t.shape)
    assert type(reg.conv) is kind and tuple(reg.conv.kernel_size) == kernel
    out = reg(s)
    assert out.shape == t.shape and (out >= 0).all()
    assert (ConvReg(s.shape, t.shape, relu=False)(s) < 0).any()


def test_fitnet_impossible_shapes_raise():
    with pytest.raises(ValueError, match=r"\(2, 3, 3, 3\).*\(2, 6, 8, 8\)"):
        FitNet(s_shapes=[torch.Size([2, 3, 3, 3])], t_shapes=[torch.Size([2, 6, 8, 8])])
    with pytest.raises(ValueError, match="4-D"):
        FitNet(s_shapes=[torch.Size([2, 3])], t_shapes=[torch.Size([2, 6])])
    loss_mod = FitNet(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 6, 4, 4])])
    with pytest.raises(ValueError, match="teacher map"):
        loss_mod(torch.randn(2, 3, 4, 4), torch.randn(2, 6, 5, 5))


# --------------------------------------------------------------------------------------------------------
# AT
# --------------------------------------------------------------------------------------------------------
def _at_map(x):
    b, c, h, w = x.shape
    out = np.zeros((b, h * w))
    for n in range(b):
        v = np.zeros(h * w)
        for ch in range(c):
            v += np.abs(x[n, ch]).reshape(-1) ** 2 / c
        out[n] = v / np.sqrt((v ** 2).sum())
    return out


def test_at_value_sum_over_layers_with_pooling():
    s = [rand(2, 3, 4, 4, seed=1), rand(2, 2, 8, 8, seed=2)]
    t = [rand(2, 5, 4, 4, seed=3), rand(2, 4, 4, 4, seed=4)]
    expected = 0.0
    for fs, ft in [(np_(s[0]), np_(t[0])), (pool_blocks(np_(s[1]), 2), np_(t[1]))]:
        expected += ((_at_map(fs) - _at_map(ft)) ** 2).mean()
    assert AT()(s, t).item() == pytest.approx(expected, rel=1e-9)
    # teacher larger than student is pooled too
    assert AT()(t[1], s[1]).item() == pytest.approx(((_at_map(np_(t[1])) - _at_map(pool_blocks(np_(s[1]), 2))) ** 2)
                                                    .mean(), rel=1e-9)


@pytest.mark.parametrize("p", [1.5, 3.0, 4.0])
def test_at_other_powers_use_the_absolute_value(p):
    """|f|^p for every p (an even integer p takes f^p, the same values; odd and fractional ones need |f|)."""
    s, t = rand(2, 3, 4, 4, seed=21), rand(2, 2, 4, 4, seed=22)
    amap = lambda x: (np.abs(x) ** p).mean(1).reshape(x.shape[0], -1)  # noqa: E731
    a, b = amap(np_(s)), amap(np_(t))
    a, b = a / np.linalg.norm(a, axis=1, keepdims=True), b / np.linalg.norm(b, axis=1, keepdims=True)
    assert AT(p=p)(s, t).item() == pytest.approx(((a - b) ** 2).mean(), rel=1e-9)


def test_at_zero_for_scaled_copy_and_batch_mismatch_error():
    f = rand(2, 3, 4, 4, seed=5)
    assert AT()(3.0 * f, f).item() == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="batch"):
        AT()(f, f[:1])


# --------------------------------------------------------------------------------------------------------
# NST
# --------------------------------------------------------------------------------------------------------
def test_nst_value_polynomial_mmd():
    s = [rand(2, 3, 2, 2, seed=6), rand(2, 2, 4, 4, seed=7)]
    t = [rand(2, 4, 2, 2, seed=8), rand(2, 3, 2, 2, seed=9)]
    expected = 0.0
    for fs, ft in [(np_(s[0]), np_(t[0])), (pool_blocks(np_(s[1]), 2), np_(t[1]))]:
        for n in range(2):
            a = [v / np.linalg.norm(v) for v in fs[n].reshape(fs.shape[1], -1)]
            b = [v / np.linalg.norm(v) for v in ft[n].reshape(ft.shape[1], -1)]
            k = lambda x, y: float(x @ y) ** 2  # noqa: E731
            mmd = (np.mean([k(x, y) for x in b for y in b]) + np.mean([k(x, y) for x in a for y in a])
                   - 2 * np.mean([k(x, y) for x in a for y in b]))
            expected += mmd / 2  # average over the batch of 2
    assert NST()(s, t).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("shape_s, shape_t", [((2, 3, 4, 4), (2, 5, 4, 4)),    # channel-side Gram matrices
                                                ((2, 8, 2, 2), (2, 6, 2, 2))])   # spatial side (N small)
def test_nst_gradient_reaches_the_student_as_the_direct_formula(shape_s, shape_t):
    """NST's written-out gradient (either Gram side) against autograd through the kernel means written directly:
    mean((s s^T)^2) + mean((t t^T)^2) - 2 mean((s t^T)^2) on the L2-normalised channel rows; none to the teacher."""
    from densekd.losses.features import _PolyMMD
    b, cs, n = shape_s[0], shape_s[1], shape_s[2] * shape_s[3]
    spatial = n * (2 * cs + shape_t[1]) < (cs + shape_t[1]) ** 2
    assert spatial == (shape_s[1] == 8)  # the two cases take the two sides
    s0, t = rand(*shape_s, seed=11).double(), rand(*shape_t, seed=12).double()
    s0[0, 1] = 0.0  # a dead channel (all-zero after a ReLU): F.normalize's clamped norm
    ours, ref = s0.clone().requires_grad_(True), s0.clone().requires_grad_(True)
    teacher = t.clone().requires_grad_(True)
    NST()(ours, teacher).backward()
    assert teacher.grad is None
    a = F.normalize(ref.flatten(2), dim=2)
    c = F.normalize(t.flatten(2), dim=2)
    k = lambda x, y: (x @ y.transpose(1, 2)).pow(2).mean()  # noqa: E731
    (k(c, c) + k(a, a) - 2 * k(a, c)).backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-9, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: _PolyMMD.apply(x, t.flatten(2)), (s0.flatten(2).requires_grad_(True),))


def test_nst_zero_for_identical():
    f = rand(2, 3, 4, 4, seed=10)
    assert NST()(f, f).item() == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------------------
# FT
# --------------------------------------------------------------------------------------------------------
def test_ft_modules_shapes_and_rate():
    loss_mod = FT(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 8, 4, 4])])
    para, trans = loss_mod.paraphrasers[0], loss_mod.translators[0]
    assert isinstance(para, Paraphraser) and isinstance(trans, Translator)
    factor, rec = para(torch.randn(2, 8, 4, 4))
    assert factor.shape == (2, 4, 4, 4) and rec.shape == (2, 8, 4, 4)
    assert trans(torch.randn(2, 3, 4, 4)).shape == (2, 4, 4, 4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in para.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in trans.modules())
    with pytest.raises(ValueError, match="rate"):
        FT(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 1, 4, 4])])


def test_ft_value_and_init_stage():
    s, t = rand(2, 3, 4, 4, seed=11, requires_grad=True), rand(2, 6, 2, 2, seed=12)
    loss_mod = double(FT(s_shapes=[s.shape], t_shapes=[t.shape]))
    assert FT.init_trains_student is False
    fs = np_(loss_mod.translators[0](s))
    ft = np_(loss_mod.paraphrasers[0].encoder(t))
    fs = pool_blocks(fs, 2)  # student factor is 4x4, teacher 2x2

    def factor(x):
        out = []
        for n in range(x.shape[0]):
            v = (x[n] ** 2).mean(axis=0).reshape(-1)
            out.append(v / np.sqrt((v ** 2).sum()))
        return np.stack(out)

    expected = np.abs(factor(fs) - factor(ft)).mean()
    got = loss_mod(s, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    got.backward()
    assert all(p.grad is None for p in loss_mod.paraphrasers.parameters())
    assert all(p.grad is not None for p in loss_mod.translators.parameters())
    assert {id(p) for p in loss_mod.separate_parameters()} == {id(p) for p in loss_mod.paraphrasers.parameters()}
    assert {id(p) for p in loss_mod.init_parameters()} == {id(p) for p in loss_mod.paraphrasers.parameters()}

    # init stage: reconstruction MSE of the paraphraser on the teacher features, grads to the paraphraser
    rec = np_(loss_mod.paraphrasers[0](t)[1])
    init = loss_mod.init_loss(s, t)
    assert init.item() == pytest.approx(((rec - np_(t)) ** 2).mean(), rel=1e-9)
    init.backward()
    assert all(p.grad is not None for p in loss_mod.paraphrasers.parameters())


def test_ft_init_stage_step_reduces_reconstruction():
    torch.manual_seed(0)
    t = torch.relu(torch.randn(4, 4, 4, 4))
    loss_mod = FT(s_shapes=[torch.Size([4, 2, 4, 4])], t_shapes=[t.shape])
    first = loss_mod.init_loss(None, t)
    first.backward()
    with torch.no_grad():  # one plain SGD step on the init-stage parameters
        for p in loss_mod.init_parameters():
            p -= 0.05 * p.grad
    assert loss_mod.init_loss(None, t).item() < first.item()


# --------------------------------------------------------------------------------------------------------
# AB
# --------------------------------------------------------------------------------------------------------
def test_ab_value_alternative_l2_and_layer_weights():
    s = [rand(2, 3, 4, 4, seed=13, requires_grad=True), rand(2, 3, 2, 2, seed=14, requires_grad=True)]
    t = [rand(2, 3, 4, 4, seed=15), rand(2, 3, 2, 2, seed=16)]
    loss_mod = double(AB(s_shapes=shapes(*s), t_shapes=shapes(*t)))
    assert all(isinstance(c, nn.Identity) for c in loss_mod.connectors)
    expected = 0.0
    for layer, w in zip(range(2), [0.5, 1.0]):
        total = 0.0
        for a, b in zip(np_(s[layer]).ravel(), np_(t[layer]).ravel()):
            if b <= 0 and a > -1.0:
                total += (a + 1.0) ** 2
            elif b > 0 and a <= 1.0:
                total += (a - 1.0) ** 2
        expected += w * total / 2 / 1000 * 3
    assert loss_mod(s, t).item() == pytest.approx(expected, rel=1e-9)
    assert loss_mod.init_loss(s, t).item() == pytest.approx(expected, rel=1e-9)
    assert AB.init_trains_student is True
    assert loss_mod.init_parameters() == []


def test_ab_connector_for_different_shapes_and_margin():
    s, t = rand(2, 3, 4, 4, seed=17, requires_grad=True), rand(2, 5, 4, 4, seed=18)
    loss_mod = double(AB(s_shapes=[s.shape], t_shapes=[t.shape], margin=2.0))
    conn = loss_mod.connectors[0]
    assert isinstance(conn, ConvReg) and conn.relu is False
    assert {id(p) for p in loss_mod.init_parameters()} == {id(p) for p in conn.parameters()}
    c = np_(conn(s))
    tt = np_(t)
    expected = (np.where((tt <= 0) & (c > -2), (c + 2) ** 2, 0) + np.where((tt > 0) & (c <= 2), (c - 2) ** 2, 0))
    assert loss_mod(s, t).item() == pytest.approx(expected.sum() / 2 / 1000 * 3, rel=1e-9)


# --------------------------------------------------------------------------------------------------------
# OFD
# --------------------------------------------------------------------------------------------------------
def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _margin_ref(m, s):
    s = abs(s)
    if _phi(-m / s) > 0.001:
        return -s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / _phi(-m / s) + m
    return -3 * s


def test_ofd_margin_formula_and_meaning():
    mean = torch.tensor([0.0, 0.5, -1.0, 2.0, 10.0])
    std = torch.tensor([1.0, 2.0, 0.5, -1.5, 1.0])  # BN gamma may be negative: |gamma| is the std
    got = ofd_margin(mean, std)
    for i in range(5):
        assert got[i].item() == pytest.approx(_margin_ref(mean[i].item(), std[i].item()), rel=1e-9)
    assert got[4].item() == pytest.approx(-3.0)  # almost no negative mass: -3 sigma
    # it is E[x | x < 0] for x ~ N(mean, std^2) (Monte Carlo)
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2.0 + 0.5
    assert got[1].item() == pytest.approx(x[x < 0].mean().item(), abs=0.01)


def test_ofd_value_with_teacher_bn():
    s = [rand(2, 3, 4, 4, seed=19, requires_grad=True), rand(2, 2, 2, 2, seed=20, requires_grad=True)]
    t = [rand(2, 4, 4, 4, seed=21), rand(2, 3, 2, 2, seed=22)]
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 0.5, -2.0]))
        bn.bias.copy_(torch.tensor([0.2, -0.3, 1.0]))
    mean0, std0 = torch.tensor([0.0, 1.0, -0.5, 0.3]), torch.tensor([1.0, 1.0, 0.7, 2.0])
    loss_mod = double(OFD(s_shapes=shapes(*s), t_shapes=shapes(*t), teacher_bn=[(mean0, std0), bn]))
    margins = [[_margin_ref(m, d) for m, d in zip(mean0.tolist(), std0.tolist())],
               [_margin_ref(m, d) for m, d in zip([0.2, -0.3, 1.0], [1.0, 0.5, -2.0])]]
    for got, want in zip(loss_mod.margins(), margins):
        assert got.tolist() == pytest.approx(want, rel=1e-6)
    expected = 0.0
    for layer, w in zip(range(2), [0.5, 1.0]):
        c = np_(loss_mod.connectors[layer](s[layer]))
        tt = np_(t[layer])
        marg = np_(loss_mod.margins()[layer])
        total = 0.0
        for n in range(2):
            for ch in range(tt.shape[1]):
                for v_s, v_t in zip(c[n, ch].ravel(), tt[n, ch].ravel()):
                    target = max(v_t, marg[ch])
                    if v_s <= target and target <= 0:
                        continue
                    total += (v_s - target) ** 2
        expected += w * total
    assert loss_mod(s, t).item() == pytest.approx(expected / 2 / 1000, rel=1e-9)
    assert int(loss_mod.batches_seen) == 0  # no estimation when teacher_bn is given


def test_ofd_gradient_is_the_partial_l2s():
    """The student's gradient is 2 (s - target) / 2^(L-1-l) / B / 1000 where s > target or target > 0, else 0 (the
    masked form written out), the teacher's none."""
    s = rand(2, 3, 4, 4, seed=23, requires_grad=True)
    t = rand(2, 3, 4, 4, seed=24, requires_grad=True)
    mean0, std0 = torch.tensor([0.0, 1.0, -0.5]), torch.tensor([1.0, 1.0, 0.7])
    loss_mod = double(OFD(s_shapes=shapes(s), t_shapes=shapes(t), teacher_bn=[(mean0, std0)]))
    loss_mod(s, t).backward()
    conn = loss_mod.connectors[0]
    x = s.detach().clone().requires_grad_(True)
    c = conn(x)
    target = torch.maximum(t.detach(), loss_mod.margins()[0].view(1, -1, 1, 1))
    mask = ((c > target) | (target > 0)).double()
    assert 0 < float(mask.mean()) < 1  # both cases occur
    ((c - target).pow(2) * mask).sum().div(2 * 1000).backward()
    torch.testing.assert_close(s.grad, x.grad, rtol=1e-10, atol=1e-14)
    assert t.grad is None


def test_ofd_margin_estimated_on_first_batches_then_frozen():
    loss_mod = OFD(s_shapes=[torch.Size([4, 2, 3, 3])], t_shapes=[torch.Size([4, 3, 3, 3])], estimate_batches=2)
    batches = [rand(4, 3, 3, 3, seed=23).float() * 2 + 0.5, rand(4, 3, 3, 3, seed=24).float() - 1]
    for tb in batches:
        loss_mod(torch.randn(4, 2, 3, 3), tb)
    allx = torch.cat(batches).double().transpose(0, 1).reshape(3, -1)
    for ch in range(3):
        vals = allx[ch].tolist()
        m = sum(vals) / len(vals)
        sd = math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))
        assert loss_mod.margin0[ch].item() == pytest.approx(_margin_ref(m, sd), rel=1e-5)
    frozen = loss_mod.margin0.clone()
    loss_mod(torch.randn(4, 2, 3, 3), torch.randn(4, 3, 3, 3) + 5)
    assert torch.equal(loss_mod.margin0, frozen)
    assert "margin0" in loss_mod.state_dict() and int(loss_mod.state_dict()["batches_seen"]) == 2


def test_ofd_errors():
    with pytest.raises(ValueError, match="spatial"):
        OFD(s_shapes=[torch.Size([2, 3, 8, 8])], t_shapes=[torch.Size([2, 4, 4, 4])])
    with pytest.raises(ValueError, match="channels"):
        OFD(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 4, 4, 4])],
            teacher_bn=(torch.zeros(3), torch.ones(3)))
    with pytest.raises(ValueError, match="entries"):
        OFD(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 4, 4, 4])],
            teacher_bn=[(torch.zeros(4), torch.ones(4))] * 2)


# --------------------------------------------------------------------------------------------------------
# FSP
# --------------------------------------------------------------------------------------------------------
def _gram(bottom, top):
    b, c1, h, w = bottom.shape
    c2 = top.shape[1]
    g = np.zeros((b, c1, c2))
    for n in range(b):
        for i in range(c1):
            for j in range(c2):
                g[n, i, j] = (bottom[n, i] * top[n, j]).sum() / (h * w)
    return g


def test_fsp_value_gram_of_consecutive_layers():
    s = [rand(2, 2, 4, 4, seed=25), rand(2, 3, 2, 2, seed=26), rand(2, 3, 2, 2, seed=27)]
    t = [rand(2, 2, 4, 4, seed=28), rand(2, 3, 2, 2, seed=29), rand(2, 3, 2, 2, seed=30)]
    expected = 0.0
    for i in range(2):
        gs = _gram(pool_blocks(np_(s[i]), 2) if i == 0 else np_(s[i]), np_(s[i + 1]))
        gt = _gram(pool_blocks(np_(t[i]), 2) if i == 0 else np_(t[i]), np_(t[i + 1]))
        expected += ((gs - gt) ** 2).mean()
    loss_mod = FSP(s_shapes=shapes(*s), t_shapes=shapes(*t))
    assert loss_mod(s, t).item() == pytest.approx(expected, rel=1e-9)
    assert loss_mod.init_loss(s, t).item() == pytest.approx(expected, rel=1e-9)
    assert FSP.init_trains_student is True and loss_mod.init_parameters() == []


def test_fsp_errors():
    with pytest.raises(ValueError, match="equal student and teacher channel"):
        FSP(s_shapes=[torch.Size([2, 2, 4, 4]), torch.Size([2, 3, 4, 4])],
            t_shapes=[torch.Size([2, 2, 4, 4]), torch.Size([2, 4, 4, 4])])
    with pytest.raises(ValueError, match="at least 2"):
        FSP()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="equal student and teacher channel"):
        FSP()([torch.randn(2, 3, 4, 4)] * 2, [torch.randn(2, 5, 4, 4)] * 2)


# --------------------------------------------------------------------------------------------------------
# VID
# --------------------------------------------------------------------------------------------------------
def test_vid_value_gaussian_nll():
    s = [rand(2, 3, 4, 4, seed=31, requires_grad=True), rand(2, 2, 4, 4, seed=32, requires_grad=True)]
    t = [rand(2, 5, 4, 4, seed=33), rand(2, 4, 2, 2, seed=34)]
    loss_mod = double(VID(s_shapes=shapes(*s), t_shapes=shapes(*t)))
    # initial variance is init_pred_var; mid channels default to the teacher's
    var0 = F.softplus(loss_mod.log_scales[0]) + 1e-5
    assert torch.allclose(var0, torch.full_like(var0, 5.0))
    assert loss_mod.regressors[0][0].out_channels == 5 and loss_mod.regressors[1][0].out_channels == 4
    with torch.no_grad():
        loss_mod.log_scales[1].copy_(torch.tensor([0.1, -0.5, 1.0, 2.0]))
    expected = 0.0
    for layer in range(2):
        inp = s[layer] if layer == 0 else F.avg_pool2d(s[layer], 2)
        mu = np_(loss_mod.regressors[layer](inp))
        alpha = np_(loss_mod.log_scales[layer])
        tt = np_(t[layer])
        total = 0.0
        for n in range(2):
            for c in range(tt.shape[1]):
                var = math.log(1 + math.exp(alpha[c])) + 1e-5
                for a, b in zip(mu[n, c].ravel(), tt[n, c].ravel()):
                    total += 0.5 * ((a - b) ** 2 / var + math.log(var))
        expected += total / tt.size
    got = loss_mod(s, t)
    assert got.item() == pytest.approx(expected, rel=1e-9)
    got.backward()
    assert all(p.grad is not None for p in loss_mod.log_scales)


def test_vid_channel_error():
    loss_mod = VID(s_shapes=[torch.Size([2, 3, 4, 4])], t_shapes=[torch.Size([2, 5, 4, 4])])
    with pytest.raises(ValueError, match="channels"):
        loss_mod(torch.randn(2, 4, 4, 4), torch.randn(2, 5, 4, 4))


# ----------------------------------------------------------------------------------------------------------
# KDSVD
# ----------------------------------------------------------------------------------------------------------
def np_top_right_vectors(f, n):
    """numpy: per image, the top-n right singular vectors (columns, C-dim) and values of f viewed as HW x C,
    each vector's sign fixed so that its largest-magnitude entry is positive."""
    out_v, out_s = [], []
    for b in range(f.shape[0]):
        x = f[b].reshape(f.shape[1], -1).T  # HW x C
        _, sv, vt = np.linalg.svd(x, full_matrices=False)
        v = vt.T[:, :n].copy()
        for j in range(v.shape[1]):
            if v[np.argmax(np.abs(v[:, j])), j] < 0:
                v[:, j] = -v[:, j]
        out_v.append(v)
        out_s.append(sv[:n])
    return out_v, out_s


def np_kdsvd(s_list, t_list, k=1, extra=3):
    total, prev = 0.0, None
    B = s_list[0].shape[0]
    for s, t in zip(s_list, t_list):
        vt, st = np_top_right_vectors(t, k)
        vs, _ = np_top_right_vectors(s, k + extra)
        cur = []
        for b in range(B):
            scale = st[b] / math.sqrt(sum(x * x for x in st[b]))
            aligned = np.zeros_like(vt[b])
            for j in range(k):  # the student vector of largest |cos| with teacher vector j, with the cosine's sign
                cos = [float(vs[b][:, i] @ vt[b][:, j]) for i in range(vs[b].shape[1])]
                i = int(np.argmax(np.abs(cos)))
                aligned[:, j] = np.sign(cos[i]) * vs[b][:, i]
            cur.append((aligned * scale, vt[b] * scale))
        if prev is not None:
            for b in range(B):
                (a_s, a_t), (p_s, p_t) = cur[b], prev[b]
                for i in range(a_s.shape[0]):
                    for j in range(p_s.shape[0]):
                        for m in range(k):
                            g_s = math.exp(-(a_s[i, m] - p_s[j, m]) ** 2 / 8)
                            g_t = math.exp(-(a_t[i, m] - p_t[j, m]) ** 2 / 8)
                            total += (g_s - g_t) ** 2
        prev = cur
    return total / B


@pytest.mark.parametrize("k", [1, 2])
def test_kdsvd_matches_numpy_svd_and_loops(k):
    from densekd.losses import KDSVD

    s = [rand(3, 4, 6, 6, seed=1), rand(3, 8, 3, 3, seed=2), rand(3, 8, 3, 2, seed=3)]  # non-square last map
    t = [rand(3, 4, 6, 6, seed=4), rand(3, 8, 3, 3, seed=5), rand(3, 8, 3, 2, seed=6)]
    got = KDSVD(k=k)(s, t)
    want = np_kdsvd([np_(x) for x in s], [np_(x) for x in t], k=k)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_kdsvd_value_does_not_depend_on_the_svd_signs():
    """Flipping the sign of a whole feature map flips every singular vector; the fixed teacher convention and
    the alignment make the loss invariant (the reference's value would change with the SVD routine's signs)."""
    from densekd.losses import KDSVD

    s = [rand(2, 4, 4, 4, seed=7), rand(2, 6, 2, 2, seed=8)]
    t = [rand(2, 4, 4, 4, seed=9), rand(2, 6, 2, 2, seed=10)]
    base = KDSVD()(s, t).item()
    assert KDSVD()([-s[0], s[1]], [t[0], -t[1]]).item() == pytest.approx(base, rel=1e-9)
    assert base > 0


def test_kdsvd_gradients_reach_student_not_teacher_and_stay_finite():
    from densekd.losses import KDSVD

    s = [rand(2, 4, 4, 4, seed=11, requires_grad=True), rand(2, 6, 2, 2, seed=12, requires_grad=True)]
    t = [rand(2, 4, 4, 4, seed=13, requires_grad=True), rand(2, 6, 2, 2, seed=14, requires_grad=True)]
    KDSVD()(s, t).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)
    # an all-zero student map has repeated (zero) singular values: SVD's backward is infinite there; the loss
    # zeroes those gradient entries instead of handing NaN to the network...
    z = [torch.zeros(2, 4, 4, 4, dtype=torch.float64, requires_grad=True), s[1].detach().clone().requires_grad_(True)]
    KDSVD()(z, [t[0].detach(), t[1].detach()]).backward()
    assert all(torch.isfinite(x.grad).all() for x in z)
    # ...and only on its own path: another term's NaN gradient on the same tensor is not hidden
    shared = rand(2, 4, 4, 4, seed=15, requires_grad=True)
    other = rand(2, 6, 2, 2, seed=16, requires_grad=True)
    loss = KDSVD()([shared, other], [t[0].detach(), t[1].detach()]) + (shared * float("nan")).sum()
    loss.backward()
    assert torch.isnan(shared.grad).any()


def test_kdsvd_gradient_equals_autograd_through_an_svd():
    """The Gram-eigendecomposition path (both sides: C <= HW and HW < C) with its pair-restricted backward gives
    the gradient of the same loss computed with torch.linalg.svd and autograd, in float64; with a dead student
    channel (repeated zero singular values, where the SVD's backward is 0/0) the gradient stays finite and
    non-zero."""
    from densekd.losses import KDSVD

    class SVDKDSVD(KDSVD):
        @staticmethod
        def right_singular(f, n):
            _, sv, vh = torch.linalg.svd(f.flatten(2).transpose(1, 2), full_matrices=False)
            return vh.transpose(1, 2)[:, :, :n], sv[:, :n]

    s0 = [rand(2, 4, 4, 4, seed=31), rand(2, 8, 2, 2, seed=32)]  # C <= HW, then HW < C
    t = [rand(2, 4, 4, 4, seed=33), rand(2, 8, 2, 2, seed=34)]
    ours = [x.clone().requires_grad_(True) for x in s0]
    ref = [x.clone().requires_grad_(True) for x in s0]
    a, b = KDSVD()(ours, t), SVDKDSVD()(ref, t)
    assert a.item() == pytest.approx(b.item(), rel=1e-10)
    a.backward()
    b.backward()
    for x, y in zip(ours, ref):
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-7, atol=1e-10)
    dead = [x.clone() for x in s0]
    dead[0][:, 1] = 0.0
    dead[0][:, 2] = 0.0  # two zero channels: a repeated zero eigenvalue of X^T X
    dead = [x.requires_grad_(True) for x in dead]
    KDSVD()(dead, t).backward()
    assert torch.isfinite(dead[0].grad).all() and float(dead[0].grad.abs().sum()) > 0
    # (the aligned vector lies in the dead channels' null space here, so the gradient reaches them; through
    # torch.linalg.svd's backward every entry is 0/0 and the loss zeroes them all)
    via_svd = [x.detach().clone().requires_grad_(True) for x in dead]
    SVDKDSVD()(via_svd, t).backward()
    assert float(via_svd[0].grad.abs().sum()) == 0.0


def test_kdsvd_errors_and_registration():
    from densekd.losses import KDSVD

    with pytest.raises(ValueError, match="at least 2"):
        KDSVD()(rand(2, 4, 4, 4), rand(2, 4, 4, 4))
    with pytest.raises(ValueError, match="connector='conv'"):
        KDSVD()([rand(2, 4, 4, 4), rand(2, 8, 2, 2)], [rand(2, 8, 4, 4), rand(2, 8, 2, 2)])
    with pytest.raises(ValueError, match="k must"):
        KDSVD(k=0)
    from densekd.losses import features

    assert LOSSES.get("KDSVD") is KDSVD is losses_pkg.KDSVD and "KDSVD" in features.__all__
    assert "Singular Value Decomposition" in KDSVD.__doc__ and "2018" in KDSVD.__doc__
    built = LOSSES.build(dict(type="KDSVD"), s_shapes=[torch.Size([2, 4, 4, 4])] * 2,
                         t_shapes=[torch.Size([2, 4, 4, 4])] * 2, num_classes=10, num_data=50)
    assert built.k == 1 and not list(built.parameters())
