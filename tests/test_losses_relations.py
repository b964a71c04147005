"""Tests for densekd.losses.relations: SP, CC, RKD, PKT, IRG.

Reference values are written out independently with numpy loops (pairs,
triplets, per-row sums) following the papers / reference implementations.
"""
import math

import numpy as np
import pytest
import torch

import densekd.losses.relations as rel_mod
from densekd.losses import CC, IRG, PKT, RKD, SP
from densekd.registry import LOSSES


def flat(x):
    return x.detach().reshape(x.shape[0], -1).numpy().astype(np.float64)


def feats(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------- numpy references
def np_sp_layer(s, t):
    fs, ft = flat(s), flat(t)
    b = fs.shape[0]

    def gram_rownorm(f):
        g = np.zeros((b, b))
        for i in range(b):
            for j in range(b):
                g[i, j] = sum(f[i, k] * f[j, k] for k in range(f.shape[1]))
        for i in range(b):
            g[i] /= max(math.sqrt(sum(v * v for v in g[i])), 1e-12)
        return g

    gs, gt = gram_rownorm(fs), gram_rownorm(ft)
    return sum((gs[i, j] - gt[i, j]) ** 2 for i in range(b) for j in range(b)) / (b * b)


def np_cc(es, et):
    b = es.shape[0]
    total = 0.0
    for i in range(b - 1):
        total += sum(abs(es[i, d] - et[i, d]) * abs(es[i + 1, d] - et[i + 1, d]) for d in range(es.shape[1]))
    return total / (b - 1)


def smooth_l1(x, y):
    d = abs(x - y)
    return 0.5 * d * d if d < 1 else d - 0.5


def np_rkd(s, t, w_d=25.0, w_a=50.0):
    fs, ft = flat(s), flat(t)
    b = fs.shape[0]

    def dist(f):
        d = np.zeros((b, b))
        for i in range(b):
            for j in range(b):
                if i != j:
                    d[i, j] = math.sqrt(sum((f[i, k] - f[j, k]) ** 2 for k in range(f.shape[1])))
        pos = [d[i, j] for i in range(b) for j in range(b) if d[i, j] > 0]
        return d / (sum(pos) / len(pos))

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return v / max(n, 1e-12)

    def angles(f):
        a = np.zeros((b, b, b))
        for i in range(b):  # anchor
            for j in range(b):
                for k in range(b):
                    a[i, j, k] = float(np.dot(unit(f[j] - f[i]), unit(f[k] - f[i])))
        return a

    ds, dt = dist(fs), dist(ft)
    loss_d = sum(smooth_l1(ds[i, j], dt[i, j]) for i in range(b) for j in range(b)) / b ** 2
    as_, at = angles(fs), angles(ft)
    loss_a = sum(smooth_l1(as_[i, j, k], at[i, j, k])
                 for i in range(b) for j in range(b) for k in range(b)) / b ** 3
    return w_d * loss_d + w_a * loss_a


def np_pkt(s, t, eps=1e-7):
    def cond(x):
        f = flat(x)
        b = f.shape[0]
        f = np.stack([f[i] / (math.sqrt(sum(v * v for v in f[i])) + eps) for i in range(b)])
        k = np.array([[(np.dot(f[i], f[j]) + 1) / 2 for j in range(b)] for i in range(b)])
        return np.stack([k[i] / k[i].sum() for i in range(b)])

    ps, pt = cond(s), cond(t)
    b = ps.shape[0]
    return sum(pt[i, j] * math.log((pt[i, j] + eps) / (ps[i, j] + eps))
               for i in range(b) for j in range(b)) / (b * b)


def np_pool(x):
    x = x.detach().numpy().astype(np.float64)
    if x.ndim == 2:
        return x
    b, c = x.shape[:2]
    return np.array([[x[i, ch].mean() for ch in range(c)] for i in range(b)])


def np_edge(v):
    b = v.shape[0]
    d = np.array([[sum((v[i, k] - v[j, k]) ** 2 for k in range(v.shape[1])) for j in range(b)] for i in range(b)])
    return d / d.max()


def np_transform(v1, v2):
    lam = np.array([sum((v1[i, k] - v2[i, k]) ** 2 for k in range(v1.shape[1])) for i in range(v1.shape[0])])
    return lam / lam.max()


# --------------------------------------------------------------------------- registration
def test_registered_exported_documented():
    for name in ("SP", "CC", "RKD", "PKT", "IRG"):
        assert name in rel_mod.__all__
        assert name in LOSSES
        doc = LOSSES.get(name).__doc__
        assert doc and "Shapes" in doc and "Default" in doc
        assert any(v in doc for v in ("CVPR", "ICCV", "ECCV"))


# --------------------------------------------------------------------------- SP
def test_sp_matches_numpy_and_sums_layers():
    s1, t1 = feats(4, 3, 2, 2, seed=1), feats(4, 5, 3, 3, seed=2)
    s2, t2 = feats(4, 6, seed=3), feats(4, 2, seed=4)
    e1, e2 = np_sp_layer(s1, t1), np_sp_layer(s2, t2)
    assert SP()(s1, t1).item() == pytest.approx(e1, rel=1e-10)
    assert SP()([s1, s2], [t1, t2]).item() == pytest.approx(e1 + e2, rel=1e-10)


def test_sp_zero_for_scaled_teacher_and_grad():
    s = feats(5, 4, 2, 2, seed=5).requires_grad_(True)
    # a positive rescaling of the features leaves the row-normalised Gram unchanged
    assert SP()(s, 3.0 * s.detach()).item() == pytest.approx(0.0, abs=1e-12)
    t = feats(5, 8, seed=6).requires_grad_(True)
    SP()(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_sp_bad_inputs():
    with pytest.raises(ValueError, match="batch sizes differ"):
        SP()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="student taps"):
        SP()([torch.randn(4, 3)], [torch.randn(4, 3), torch.randn(4, 3)])
    with pytest.raises(ValueError, match="expected a batched"):
        SP()(torch.randn(4), torch.randn(4))


# --------------------------------------------------------------------------- CC
def test_cc_matches_numpy_with_its_embeddings():
    torch.manual_seed(0)
    s, t = feats(5, 6, seed=7), feats(5, 3, 2, 2, seed=8)
    cc = LOSSES.build(dict(type="CC", feat_dim=4), s_shapes=[s.shape], t_shapes=[t.shape], num_classes=10)
    cc = cc.double()
    ws, bs = cc.embed_s[0].linear.weight.detach().numpy(), cc.embed_s[0].linear.bias.detach().numpy()
    wt, bt = cc.embed_t[0].linear.weight.detach().numpy(), cc.embed_t[0].linear.bias.detach().numpy()
    fs, ft = flat(s), flat(t)
    # RepDistiller's LinearEmbed: a plain linear map, no L2 normalisation
    es = np.array([[sum(ws[o, k] * fs[i, k] for k in range(fs.shape[1])) + bs[o] for o in range(4)]
                   for i in range(5)])
    et = np.array([[sum(wt[o, k] * ft[i, k] for k in range(ft.shape[1])) + bt[o] for o in range(4)]
                   for i in range(5)])
    assert cc(s, t).item() == pytest.approx(np_cc(es, et), rel=1e-10)


def test_cc_default_feat_dim_and_gradients():
    s = feats(4, 6, seed=9).requires_grad_(True)
    t = feats(4, 10, seed=10).requires_grad_(True)
    cc = CC(s_shapes=[s.shape], t_shapes=[t.shape]).double()
    assert cc.embed_s[0].linear.out_features == 128 and cc.embed_t[0].linear.out_features == 128
    cc([s], [t]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    for p in cc.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_cc_bad_inputs():
    with pytest.raises(ValueError, match="s_shapes"):
        CC()
    cc = CC(s_shapes=[torch.Size([4, 6])], t_shapes=[torch.Size([4, 10])])
    with pytest.raises(ValueError, match="rebuild"):
        cc(torch.randn(4, 7), torch.randn(4, 10))
    with pytest.raises(ValueError, match="at least 2"):
        cc(torch.randn(1, 6), torch.randn(1, 10))
    with pytest.raises(ValueError, match="built for 1 tap"):
        cc([torch.randn(4, 6)] * 2, [torch.randn(4, 10)] * 2)


# --------------------------------------------------------------------------- RKD
def test_rkd_matches_numpy():
    s, t = feats(5, 3, 2, 1, seed=11), feats(5, 4, seed=12)
    assert RKD()(s, t).item() == pytest.approx(np_rkd(s, t), rel=1e-9)
    assert RKD(w_d=1.0, w_a=0.0)(s, t).item() == pytest.approx(np_rkd(s, t, 1.0, 0.0), rel=1e-9)
    assert RKD(w_d=0.0, w_a=2.0)(s, t).item() == pytest.approx(np_rkd(s, t, 0.0, 2.0), rel=1e-9)


def test_rkd_defaults_invariance_and_grad():
    r = RKD()
    assert (r.w_d, r.w_a) == (25.0, 50.0)
    t = feats(6, 5, seed=13)
    # distances are scale-normalised and angles scale/translation invariant
    assert r(2.5 * t + 1.0, t).item() == pytest.approx(0.0, abs=1e-10)
    s = feats(6, 3, seed=14).requires_grad_(True)
    tt = t.clone().requires_grad_(True)
    r([s], [tt]).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and tt.grad is None


def test_rkd_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        RKD()(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="no positive pairwise distance"):
        RKD()(torch.full((3, 2), float("nan")), torch.randn(3, 2))
    with pytest.raises(ValueError, match="batch sizes differ"):
        RKD()(torch.randn(3, 2), torch.randn(4, 2))


# --------------------------------------------------------------------------- PKT
def test_pkt_matches_numpy():
    s, t = feats(5, 2, 2, 2, seed=15), feats(5, 6, seed=16)
    assert PKT()(s, t).item() == pytest.approx(np_pkt(s, t), rel=1e-9)
    assert PKT()([s, t], [t, s]).item() == pytest.approx(np_pkt(s, t) + np_pkt(t, s), rel=1e-9)


def test_pkt_grad_and_errors():
    s = feats(4, 3, seed=17).requires_grad_(True)
    t = feats(4, 9, seed=18).requires_grad_(True)
    loss = PKT()(s, t)
    loss.backward()
    assert loss.item() > 0
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    with pytest.raises(ValueError, match="batch sizes differ"):
        PKT()(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        PKT()([np.zeros((3, 2))], [torch.randn(3, 2)])


# --------------------------------------------------------------------------- IRG
def np_irg(s_list, t_list, w_v, w_e, w_t, vertex_layers, edge_layers, pairs):
    vs, vt = [np_pool(x) for x in s_list], [np_pool(x) for x in t_list]
    b = vs[0].shape[0]
    lv = sum(sum((vs[l][i, k] - vt[l][i, k]) ** 2 for i in range(b) for k in range(vs[l].shape[1])) / (2 * b)
             for l in vertex_layers)
    le = 0.0
    for l in edge_layers:
        a_s, a_t = np_edge(vs[l]), np_edge(vt[l])
        le += sum((a_s[i, j] - a_t[i, j]) ** 2 for i in range(b) for j in range(b)) / (2 * b)
    lt = 0.0
    for i, j in pairs:
        ls, ltt = np_transform(vs[i], vs[j]), np_transform(vt[i], vt[j])
        lt += sum((ls[k] - ltt[k]) ** 2 for k in range(b)) / 2
    return w_v * lv + w_e * le + w_t * lt


@pytest.fixture
def irg_taps():
    s = [feats(4, 3, 4, 4, seed=20), feats(4, 3, 4, 4, seed=21), feats(4, 5, 2, 2, seed=22), feats(4, 5, seed=23)]
    t = [feats(4, 6, 4, 4, seed=24), feats(4, 6, 4, 4, seed=25), feats(4, 5, 2, 2, seed=26), feats(4, 5, seed=27)]
    return s, t


def test_irg_default_matches_numpy(irg_taps):
    s, t = irg_taps
    loss = LOSSES.build(dict(type="IRG"), s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t])
    assert (loss.w_vertex, loss.w_edge, loss.w_transform) == (0.005, 0.005, 0.005)
    expected = np_irg(s, t, 0.005, 0.005, 0.005, [3], [3], [])
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-10)


def test_irg_all_terms_match_numpy(irg_taps):
    s, t = irg_taps
    loss = IRG(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t], w_vertex=0.3, w_edge=2.0,
               w_transform=0.7, vertex_layers=[2, -1], edge_layers="all", transform_pairs="consecutive")
    expected = np_irg(s, t, 0.3, 2.0, 0.7, [2, 3], [0, 1, 2, 3], [(0, 1), (2, 3)])
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-10)
    # explicit pairs, no shapes given at construction
    loss2 = IRG(w_vertex=0.0, w_edge=0.0, w_transform=1.0, transform_pairs=[(1, 0)])
    assert loss2(s, t).item() == pytest.approx(np_irg(s, t, 0, 0, 1.0, [], [], [(1, 0)]), rel=1e-10)


def test_irg_edge_gradient_is_analytic_with_constant_max():
    """dL/dv_k = w/(2B) * 8/M * sum_j (A_s - A_t)_kj (v_k - v_j), M the (constant) max distance."""
    b, w = 5, 0.5
    v = feats(b, 3, seed=30).requires_grad_(True)
    vt = feats(b, 3, seed=31)
    loss = IRG(w_vertex=0.0, w_edge=w, w_transform=0.0)
    loss(v, vt).backward()
    vn = v.detach().numpy()
    d = np.array([[((vn[i] - vn[j]) ** 2).sum() for j in range(b)] for i in range(b)])
    m = d.max()
    diff = d / m - np_edge(vt.numpy())
    expected = np.stack([w / (2 * b) * 8 / m * sum(diff[k, j] * (vn[k] - vn[j]) for j in range(b))
                         for k in range(b)])
    np.testing.assert_allclose(v.grad.numpy(), expected, rtol=1e-9, atol=1e-12)
    # same value when differentiating through the max, but a different gradient
    v2 = v.detach().clone().requires_grad_(True)
    val = IRG(w_vertex=0.0, w_edge=w, w_transform=0.0, detach_max=False)(v2, vt)
    assert val.item() == pytest.approx(loss(v, vt).item(), rel=1e-12)
    val.backward()
    assert not np.allclose(v2.grad.numpy(), expected)


def test_irg_connector_and_gradients(irg_taps):
    s, t = irg_taps
    s = [x.clone().requires_grad_(True) for x in s]
    t = [x.clone().requires_grad_(True) for x in t]
    loss = IRG(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t], vertex_layers="all",
               edge_layers="all", transform_pairs="consecutive", connector="linear").double()
    assert set(loss.connectors.keys()) == {"0", "1"}  # widths 3 vs 6 on taps 0 and 1
    loss(s, t).backward()
    for x in s:
        assert x.grad is not None and x.grad.abs().sum() > 0
    for x in t:
        assert x.grad is None
    for p in loss.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_irg_bad_inputs(irg_taps):
    s, t = irg_taps
    shapes_s, shapes_t = [x.shape for x in s], [x.shape for x in t]
    with pytest.raises(ValueError, match="connector='linear'"):
        IRG(s_shapes=shapes_s, t_shapes=shapes_t, vertex_layers=[0])
    with pytest.raises(ValueError, match="connector='linear'"):
        IRG(vertex_layers=[0])(s, t)
    with pytest.raises(ValueError, match="equal widths within the student"):
        IRG(s_shapes=shapes_s, t_shapes=shapes_t, transform_pairs=[(1, 2)])
    with pytest.raises(ValueError, match="out of range"):
        IRG(s_shapes=shapes_s, t_shapes=shapes_t, edge_layers=[7])
    with pytest.raises(ValueError, match="two different taps"):
        IRG(transform_pairs=[(1, 1)])(s, t)
    with pytest.raises(ValueError, match="at least 2 samples"):
        IRG()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="built for 4 tap"):
        IRG(s_shapes=shapes_s, t_shapes=shapes_t)(s[:2], t[:2])
    with pytest.raises(ValueError, match="needs s_shapes"):
        IRG(connector="linear")
    with pytest.raises(ValueError, match="student taps"):
        IRG()(s, t[:3])


def test_irg_with_w_vertex_zero_takes_the_authors_64_to_32_channel_pairing():
    """IRG.prototxt: no vertex term, a 64-channel teacher stage and a 32-channel student stage. With
    w_vertex=0 the vertex widths are not checked (the term is off), so the pairing builds and runs."""
    s = [feats(4, 32, 4, 4, seed=40), feats(4, 32, 4, 4, seed=41)]
    t = [feats(4, 64, 4, 4, seed=42), feats(4, 64, 4, 4, seed=43)]
    sh = dict(s_shapes=[x.shape for x in s], t_shapes=[x.shape for x in t])
    loss = LOSSES.build(dict(type="IRG", w_vertex=0.0, edge_layers="all"), **sh)
    assert not list(loss.parameters())  # no connector was needed
    expected = np_irg(s, t, 0.0, 0.005, 0.005, [], [0, 1], [])
    assert loss(s, t).item() == pytest.approx(expected, rel=1e-10)
    # IRG_Transformation.prototxt: only the transformation term
    loss_t = IRG(w_vertex=0.0, w_edge=0.0, transform_pairs="consecutive", **sh)
    assert loss_t(s, t).item() == pytest.approx(np_irg(s, t, 0, 0, 0.005, [], [], [(0, 1)]), rel=1e-10)
    # without shapes at construction (checked at the first call) too
    assert IRG(w_vertex=0.0)(s, t).item() == pytest.approx(np_irg(s, t, 0, 0.005, 0.005, [], [1], []), rel=1e-10)
    # gradients reach the student only
    sg = [x.clone().requires_grad_(True) for x in s]
    tg = [x.clone().requires_grad_(True) for x in t]
    loss(sg, tg).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in sg) and all(x.grad is None for x in tg)
    # a vertex term that is on still needs equal widths (or connector='linear')
    with pytest.raises(ValueError, match="connector='linear'"):
        IRG(w_vertex=0.005, **sh)
