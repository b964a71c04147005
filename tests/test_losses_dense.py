"""Tests for densekd.losses.dense: PixelWiseKD, PairWiseKD, CWD.

Every value test compares against an independent computation written out here with explicit loops over
pixels / windows / pairs on tiny tensors (plain Python math), not against the module's helpers.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from densekd.nn.connectors import ConvConnector
from densekd.losses import CWD, PairWiseKD, PixelWiseKD
from densekd.registry import LOSSES

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- helpers
def _softmax(vals: list[float], T: float) -> list[float]:
    m = max(v / T for v in vals)
    e = [math.exp(v / T - m) for v in vals]
    z = sum(e)
    return [x / z for x in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q) if pi > 0)


def _pixel_kd_loops(s: torch.Tensor, t: torch.Tensor, valid, T: float) -> float:
    """mean over valid (b, h, w) of KL(softmax(t/T) || softmax(s/T)) * T^2, by loops."""
    B, C, H, W = s.shape
    tot, n = 0.0, 0
    for b in range(B):
        for h in range(H):
            for w in range(W):
                if valid is not None and not valid(b, h, w):
                    continue
                ps = _softmax([s[b, c, h, w].item() for c in range(C)], T)
                pt = _softmax([t[b, c, h, w].item() for c in range(C)], T)
                tot += _kl(pt, ps)
                n += 1
    return tot / max(n, 1) * T * T


# ---------------------------------------------------------------------------------------------- PixelWiseKD
def test_pixelwise_matches_loops_with_ignore_pixels():
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 3, 5), torch.randn(2, 4, 3, 5)
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 1, 2] = target[1, 0, 0] = target[1, 2, 4] = 255
    for T in (1.0, 2.5):
        got = PixelWiseKD(T=T)(s, t, target=target).item()
        want = _pixel_kd_loops(s, t, lambda b, h, w: target[b, h, w].item() != 255, T)
        assert got == pytest.approx(want, rel=1e-5)
    # without a target every pixel counts
    assert PixelWiseKD(T=2.0)(s, t).item() == pytest.approx(_pixel_kd_loops(s, t, None, 2.0), rel=1e-5)


def test_pixelwise_ignored_pixels_do_not_contribute():
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, :2, :1] = 255
    loss = PixelWiseKD(T=1.5)
    base = loss(s, t, target=target)
    s2, t2 = s.clone(), t.clone()
    s2[:, :, :2, :1] = torch.randn(2, 3, 2, 1) * 10
    t2[:, :, :2, :1] = torch.randn(2, 3, 2, 1) * 10
    assert loss(s2, t2, target=target).item() == pytest.approx(base.item(), rel=1e-6)
    # gradient at ignored pixels is exactly zero, elsewhere not
    sg = s.clone().requires_grad_(True)
    loss(sg, t, target=target).backward()
    assert torch.all(sg.grad[:, :, :2, :1] == 0)
    assert sg.grad[:, :, 2:].abs().sum() > 0
    # changing a VALID pixel does change the loss (the test above can fail)
    s3 = s.clone()
    s3[0, 0, 3, 3] += 3.0  # one class only (a shift of all classes leaves softmax unchanged)
    assert loss(s3, t, target=target).item() != pytest.approx(base.item(), rel=1e-6)


def test_pixelwise_ignore_index_and_all_ignored():
    torch.manual_seed(2)
    s, t = torch.randn(1, 3, 2, 2, requires_grad=True), torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, -1], [1, 2]]])
    got = PixelWiseKD(ignore_index=-1)(s, t, target=target).item()
    want = _pixel_kd_loops(s.detach(), t, lambda b, h, w: target[b, h, w].item() != -1, 1.0)
    assert got == pytest.approx(want, rel=1e-5)
    out = PixelWiseKD()(s, t, target=torch.full((1, 2, 2), 255))
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(s.grad).all()


def test_pixelwise_resolution_alignment():
    torch.manual_seed(3)
    s = torch.randn(2, 3, 4, 4)  # student at 1/2 of the teacher
    t = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 16, 16))  # labels at full image resolution
    target[0, 0:4, 0:4] = 255  # -> teacher pixels (0..1, 0..1) of image 0 ignored after nearest resize
    target[1, 8, 6] = 255  # nearest picks rows/cols 0,2,4,...: (8, 6) -> logits pixel (4, 3)
    target[1, 9, 7] = 255  # odd coordinates are never sampled -> no effect
    s_up = F.interpolate(s, size=(8, 8), mode="bilinear", align_corners=False)

    def valid(b, h, w):  # nearest: source index floor(dst * 16 / 8)
        return target[b, h * 2, w * 2].item() != 255

    got = PixelWiseKD(T=2.0)(s, t, target=target).item()
    assert got == pytest.approx(_pixel_kd_loops(s_up, t, valid, 2.0), rel=1e-5)
    # target given as B x 1 x H x W is accepted
    assert PixelWiseKD(T=2.0)(s, t, target=target[:, None]).item() == pytest.approx(got, rel=1e-6)


def test_pixelwise_gradients_reach_student_not_teacher():
    torch.manual_seed(4)
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, requires_grad=True)
    PixelWiseKD(T=4.0)(s, t, target=torch.zeros(2, 4, 4, dtype=torch.long)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_pixelwise_errors():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4)
    with pytest.raises(ValueError, match="class"):
        PixelWiseKD()(s, t)
    with pytest.raises(ValueError, match="B x H x W"):
        PixelWiseKD()(s, s, target=torch.zeros(2, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="batch"):
        PixelWiseKD()(s, s, target=torch.zeros(3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="B x C x H x W"):
        PixelWiseKD()(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="T"):
        PixelWiseKD(T=0)


# ---------------------------------------------------------------------------------------------- PairWiseKD
def _pool_windows_ceil(H: int, k: int) -> list[tuple[int, int]]:
    """Windows of a stride=kernel pooling with ceil_mode=True and no padding."""
    n = math.ceil((H - k) / k) + 1
    return [(i * k, min(H, i * k + k)) for i in range(n)]


def _pool_windows_adaptive(H: int, out: int) -> list[tuple[int, int]]:
    return [((i * H) // out, math.ceil((i + 1) * H / out)) for i in range(out)]


def _nodes_loops(f: torch.Tensor, rows, cols, pool: str) -> list[list[list[float]]]:
    """Per image: list of L2-normalised node vectors (norm + 1e-8), row-major over the node grid."""
    B, C = f.shape[:2]
    out = []
    for b in range(B):
        nodes = []
        for r0, r1 in rows:
            for c0, c1 in cols:
                vec = []
                for c in range(C):
                    vals = [f[b, c, h, w].item() for h in range(r0, r1) for w in range(c0, c1)]
                    vec.append(max(vals) if pool == "max" else sum(vals) / len(vals))
                norm = math.sqrt(sum(v * v for v in vec)) + 1e-8
                nodes.append([v / norm for v in vec])
        out.append(nodes)
    return out


def _pair_loss_loops(ns, nt, cross_image: bool) -> float:
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))  # noqa: E731
    if cross_image:
        ns = [[n for img in ns for n in img]]
        nt = [[n for img in nt for n in img]]
    tot, cnt = 0.0, 0
    for gs, gt in zip(ns, nt):
        for i in range(len(gs)):
            for j in range(len(gs)):
                tot += (dot(gs[i], gs[j]) - dot(gt[i], gt[j])) ** 2
                cnt += 1
    return tot / cnt


def test_pairwise_scale_maxpool_matches_loops():
    torch.manual_seed(5)
    s, t = torch.randn(2, 3, 5, 6), torch.randn(2, 7, 5, 6)  # channels differ; ceil_mode matters for H=5
    rows, cols = _pool_windows_ceil(5, int(5 * 0.5)), _pool_windows_ceil(6, int(6 * 0.5))
    assert len(rows) == 3 and len(cols) == 2
    for cross in (False, True):
        want = _pair_loss_loops(_nodes_loops(s, rows, cols, "max"), _nodes_loops(t, rows, cols, "max"), cross)
        got = PairWiseKD(pool="max", scale=0.5, cross_image=cross)(s, t).item()
        assert got == pytest.approx(want, rel=1e-5)


def test_pairwise_grid_avgpool_matches_loops_and_handles_resolution_mismatch():
    torch.manual_seed(6)
    s, t = torch.randn(2, 4, 5, 7), torch.randn(2, 3, 5, 7)
    rows, cols = _pool_windows_adaptive(5, 2), _pool_windows_adaptive(7, 3)
    for cross in (False, True):
        want = _pair_loss_loops(_nodes_loops(s, rows, cols, "avg"), _nodes_loops(t, rows, cols, "avg"), cross)
        got = PairWiseKD(pool="avg", grid=(2, 3), cross_image=cross)(s, t).item()
        assert got == pytest.approx(want, rel=1e-5)
    # different resolutions: grid pools both to the same node grid
    s_small = torch.randn(2, 4, 4, 6)
    want = _pair_loss_loops(_nodes_loops(s_small, _pool_windows_adaptive(4, 2), _pool_windows_adaptive(6, 3), "max"),
                            _nodes_loops(t, rows, cols, "max"), False)
    assert PairWiseKD(grid=(2, 3))(s_small, t).item() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="grid"):
        PairWiseKD(scale=0.5)(s_small, t)


def _dense_pairwise(s, t, cross_image, detach_norm, pool_fn):
    """Unchunked reference with full N x N matrices and plain autograd."""
    fs, ft = pool_fn(s.float()), pool_fn(t.float())

    def nodes(f):
        n = f.pow(2).sum(1, keepdim=True).sqrt() + 1e-8
        return (f / (n.detach() if detach_norm else n)).flatten(2)

    ns, nt = nodes(fs), nodes(ft)
    if cross_image:
        ns = ns.permute(1, 0, 2).reshape(1, ns.shape[1], -1)
        nt = nt.permute(1, 0, 2).reshape(1, nt.shape[1], -1)
    Ss = torch.einsum("gci,gcj->gij", ns, ns)
    St = torch.einsum("gci,gcj->gij", nt, nt)
    return ((Ss - St) ** 2).mean()


@pytest.mark.parametrize("cross_image", [False, True])
@pytest.mark.parametrize("detach_norm", [True, False])
def test_pairwise_chunked_equals_unchunked_values_and_grads(cross_image, detach_norm):
    torch.manual_seed(7)
    s0, t = torch.randn(3, 6, 8, 10), torch.randn(3, 5, 8, 10)
    pool_fn = lambda f: F.adaptive_max_pool2d(f, (4, 5))  # noqa: E731  20 nodes per image
    sd = s0.clone().requires_grad_(True)
    want = _dense_pairwise(sd, t, cross_image, detach_norm, pool_fn)
    want.backward()
    n_rows = 20 * (3 if cross_image else 1)
    runs = [("chunked", chunk) for chunk in (1, 3, 7, n_rows, 10_000, None)] + [("gram", None), ("auto", None)]
    for algorithm, chunk in runs:
        loss = PairWiseKD(grid=(4, 5), cross_image=cross_image, chunk_size=chunk, detach_norm=detach_norm,
                          algorithm=algorithm)
        sc = s0.clone().requires_grad_(True)
        got = loss(sc, t)
        got.backward()
        assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-9), (algorithm, chunk)
        torch.testing.assert_close(sc.grad, sd.grad, rtol=1e-4, atol=1e-7)
    # detaching the norm (the reference) really changes the gradient
    other = s0.clone().requires_grad_(True)
    _dense_pairwise(other, t, cross_image, not detach_norm, pool_fn).backward()
    assert not torch.allclose(other.grad, sd.grad, rtol=1e-3, atol=1e-6)


def test_pairwise_gram_identity_keeps_its_precision_when_student_and_teacher_nearly_agree():
    """The Gram form subtracts large, nearly equal terms; in float64 the loss of a student within 1e-3 of its
    teacher still matches the direct N x N formula (in float64) to 1e-6, where float32 terms would not."""
    torch.manual_seed(21)
    t = torch.randn(2, 16, 32, 32)
    s = t + 1e-3 * torch.randn_like(t)
    want = _dense_pairwise(s.double(), t.double(), False, True, lambda f: f)
    got = PairWiseKD(scale=None, algorithm="gram")(s.double(), t.double())
    assert got.item() == pytest.approx(want.item(), rel=1e-6) and want.item() < 1e-5
    fp32 = PairWiseKD(scale=None, algorithm="gram")(s, t)
    assert fp32.dtype == torch.float32 and fp32.item() == pytest.approx(want.item(), rel=1e-4)


def test_pairwise_auto_takes_the_gram_form_for_graphs_with_more_nodes_than_channels(monkeypatch):
    import densekd.losses.dense as dense

    used = []
    monkeypatch.setattr(dense, "_gram_similarity_mse", lambda a, b: used.append("gram") or a.sum() * 0)
    monkeypatch.setattr(dense._ChunkedSimilarityMSE, "apply", lambda a, b, r: used.append("chunked") or a.sum() * 0)
    s, t = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    PairWiseKD(scale=None)(s, t)        # 64 nodes > 16 channels
    PairWiseKD(scale=0.5)(s, t)         # the reference's 2 x 2 grid: 4 nodes
    PairWiseKD(scale=None, algorithm="chunked")(s, t)
    assert used == ["gram", "chunked", "chunked"]
    with pytest.raises(ValueError, match="algorithm must be one of 'auto', 'chunked', 'gram'"):
        PairWiseKD(algorithm="fast")


def test_pairwise_is_fp32_under_autocast():
    torch.manual_seed(13)
    s, t = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    loss = PairWiseKD(grid=(8, 8), chunk_size=16)
    want = _dense_pairwise(s, t, False, True, lambda f: f)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = loss(s.requires_grad_(True), t)
        bf16 = torch.bmm(torch.randn(1, 64, 6), torch.randn(1, 6, 64)).dtype
    assert bf16 == torch.bfloat16  # autocast is active for plain matmuls here...
    assert got.dtype == torch.float32  # ...but not inside the loss
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert s.grad.dtype == torch.float32 and torch.isfinite(s.grad).all()


def test_pairwise_teacher_grad_when_teacher_requires_grad_is_not_used():
    torch.manual_seed(8)
    s = torch.randn(2, 4, 6, 6, requires_grad=True)
    t = torch.randn(2, 4, 6, 6, requires_grad=True)
    PairWiseKD(grid=(3, 3), chunk_size=2)(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_pairwise_list_of_taps_is_sum_and_errors():
    torch.manual_seed(9)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    c, d = torch.randn(2, 5, 6, 6), torch.randn(2, 2, 6, 6)
    loss = PairWiseKD(grid=(2, 2))
    assert loss([a, c], [b, d]).item() == pytest.approx(loss(a, b).item() + loss(c, d).item(), rel=1e-6)
    with pytest.raises(ValueError, match="taps"):
        loss([a, c], [b])
    with pytest.raises(ValueError, match="pool"):
        PairWiseKD(pool="median")
    with pytest.raises(ValueError, match="B x C x H x W"):
        loss(torch.randn(2, 3), torch.randn(2, 3))


def test_pairwise_8192_nodes_memory_is_chunked():
    """64 x 128 nodes: the dense similarity matrix alone would be 8192^2 * 4 B = 256 MiB (x several)."""
    script = textwrap.dedent("""
        import torch
        from densekd.losses.dense import PairWiseKD
        def status(key):
            for line in open('/proc/self/status'):
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        torch.manual_seed(0)
        w = torch.randn(1, 8, 8, 8, requires_grad=True)
        PairWiseKD(grid=(8, 8))(w, w.detach() + 1).backward()  # warm up kernels / thread pools
        s = torch.randn(1, 8, 64, 128, requires_grad=True)
        t = torch.randn(1, 8, 64, 128)
        open('/proc/self/clear_refs', 'w').write('5')  # reset the peak-RSS counter
        base = status('VmRSS')
        loss = PairWiseKD(grid=(64, 128))(s, t)
        loss.backward()
        assert torch.isfinite(loss) and s.grad.abs().sum() > 0
        print(status('VmHWM') - base)
    """)
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak memory")
    env = dict(os.environ, PYTHONPATH=str(REPO), MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    peak_mb = float(out.stdout.strip().splitlines()[-1])
    # measured ~60 MB with the default chunking; a single dense 8192 x 8192 fp32 matrix is 256 MiB
    assert peak_mb < 200, f"peak memory {peak_mb:.0f} MB: the pair-wise loss is not chunked"


# ---------------------------------------------------------------------------------------------- CWD
def _cwd_loops(s: torch.Tensor, t: torch.Tensor, T: float) -> float:
    B, C, H, W = t.shape
    tot = 0.0
    for b in range(B):
        for c in range(C):
            ps = _softmax([s[b, c, h, w].item() for h in range(H) for w in range(W)], T)
            pt = _softmax([t[b, c, h, w].item() for h in range(H) for w in range(W)], T)
            tot += _kl(pt, ps)
    return tot * T * T / (B * C)


def test_cwd_matches_loops():
    torch.manual_seed(10)
    s, t = torch.randn(2, 3, 3, 4) * 3, torch.randn(2, 3, 3, 4) * 3
    for T in (1.0, 4.0):
        assert CWD(T=T)(s, t).item() == pytest.approx(_cwd_loops(s, t, T), rel=1e-5)
    assert CWD().T == 4.0


def test_cwd_connector_built_from_shapes_and_gradients():
    torch.manual_seed(11)
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 6, 4, 4, requires_grad=True)
    loss = LOSSES.build(dict(type="CWD", T=2.0), s_shapes=[s.shape], t_shapes=[t.shape], num_classes=6,
                        num_data=10)
    assert isinstance(loss.connectors[0], ConvConnector)
    out = loss(s, t)
    # value = CWD on the connector's output (connector in the same mode), divided by the student's 3 channels
    # (CIRKD) rather than the teacher's 6
    with torch.no_grad():
        mapped = loss.connectors[0](s)
    assert out.item() == pytest.approx(_cwd_loops(mapped, t.detach(), 2.0) * 6 / 3, rel=1e-5)
    out.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    conv = loss.connectors[0][0]
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    # equal channels -> identity, no learnable parameters
    assert len(list(CWD(s_shapes=[t.shape], t_shapes=[t.shape]).parameters())) == 0


def test_cwd_resolution_and_errors():
    torch.manual_seed(12)
    s, t = torch.randn(1, 2, 3, 3), torch.randn(1, 2, 6, 6)
    s_up = F.interpolate(s, size=(6, 6), mode="bilinear", align_corners=False)
    assert CWD(T=1.0)(s, t).item() == pytest.approx(_cwd_loops(s_up, t, 1.0), rel=1e-5)
    with pytest.raises(ValueError, match="s_shapes"):
        CWD()(torch.randn(1, 3, 4, 4), torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match="4-D"):
        CWD(s_shapes=[torch.Size([2, 3])], t_shapes=[torch.Size([2, 5])])


def test_registered_and_exported():
    import densekd.losses.dense as dense

    for name in ("PixelWiseKD", "PairWiseKD", "CWD"):
        assert name in dense.__all__ and name in LOSSES
    built = LOSSES.build(dict(type="PairWiseKD", grid=(2, 2)), s_shapes=[torch.Size([2, 3, 4, 4])],
                         t_shapes=[torch.Size([2, 3, 4, 4])], num_classes=3)
    assert isinstance(built, PairWiseKD) and built.grid == (2, 2)


# ---------------------------------------------------------------------------------------------- logit standardisation
def _zscore(vals: list[float], eps: float = 1e-7) -> list[float]:
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    return [(v - m) / (sd + eps) for v in vals]


def test_pixelwise_logit_std_zscores_each_pixel_over_channels():
    torch.manual_seed(20)
    s, t = torch.randn(2, 4, 3, 3) * 3, torch.randn(2, 4, 3, 3) * 5 + 1
    target = torch.randint(0, 4, (2, 3, 3))
    target[0, 0, 0] = 255
    zs, zt = torch.empty_like(s), torch.empty_like(t)
    for b in range(2):
        for h in range(3):
            for w in range(3):
                zs[b, :, h, w] = torch.tensor(_zscore([s[b, c, h, w].item() for c in range(4)]))
                zt[b, :, h, w] = torch.tensor(_zscore([t[b, c, h, w].item() for c in range(4)]))
    got = PixelWiseKD(T=2.0, logit_std=True)(s, t, target=target).item()
    want = _pixel_kd_loops(zs, zt, lambda b, h, w: target[b, h, w].item() != 255, 2.0)
    assert got == pytest.approx(want, rel=1e-5)
    sg = s.clone().requires_grad_(True)
    tg = t.clone().requires_grad_(True)
    PixelWiseKD(logit_std=True)(sg, tg, target=target).backward()
    assert sg.grad.abs().sum() > 0 and tg.grad is None


# ---------------------------------------------------------------------------------------------- DenseDIST
def _pearson(u: list[float], v: list[float], eps: float = 1e-8) -> float:
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    du, dv = [a - mu for a in u], [b - mv for b in v]
    return sum(a * b for a, b in zip(du, dv)) / (math.sqrt(sum(a * a for a in du)) * math.sqrt(sum(b * b for b in dv))
                                                 + eps)


def _dense_dist_loops(s, t, T, beta, gamma, intra, valid=None):
    B, C, H, W = t.shape
    pix = {b: [(h, w) for h in range(H) for w in range(W) if valid is None or valid(b, h, w)] for b in range(B)}
    ps = {(b, h, w): _softmax([s[b, c, h, w].item() for c in range(C)], T) for b in range(B) for h, w in pix[b]}
    pt = {(b, h, w): _softmax([t[b, c, h, w].item() for c in range(C)], T) for b in range(B) for h, w in pix[b]}
    keys = list(ps)
    inter = 1 - sum(_pearson(ps[k], pt[k]) for k in keys) / len(keys)
    if intra == "batch":
        intra_v = 1 - sum(_pearson([ps[k][c] for k in keys], [pt[k][c] for k in keys]) for c in range(C)) / C
    else:
        per_img = []
        for b in range(B):
            ks = [(b, h, w) for h, w in pix[b]]
            per_img.append(1 - sum(_pearson([ps[k][c] for k in ks], [pt[k][c] for k in ks]) for c in range(C)) / C)
        intra_v = sum(per_img) / len(per_img)
    return T * T * (beta * inter + gamma * intra_v)


@pytest.mark.parametrize("intra", ["batch", "image"])
def test_dense_dist_matches_loops(intra):
    from densekd.losses import DenseDIST

    torch.manual_seed(21)
    s, t = torch.randn(2, 4, 3, 5) * 2, torch.randn(2, 4, 3, 5) * 2
    for T, beta, gamma in ((1.0, 1.0, 1.0), (2.0, 0.5, 2.0)):
        got = DenseDIST(beta=beta, gamma=gamma, T=T, intra=intra)(s, t).item()
        assert got == pytest.approx(_dense_dist_loops(s, t, T, beta, gamma, intra), rel=1e-5)
    # the release uses every pixel: a target does not change anything unless ignore_index is set
    target = torch.randint(0, 4, (2, 3, 5))
    target[0, 0, :3] = 255
    target[1, 2, 4] = 255
    assert DenseDIST(intra=intra)(s, t, target=target).item() == pytest.approx(DenseDIST(intra=intra)(s, t).item())
    got = DenseDIST(intra=intra, ignore_index=255)(s, t, target=target).item()
    want = _dense_dist_loops(s, t, 1.0, 1.0, 1.0, intra, valid=lambda b, h, w: target[b, h, w].item() != 255)
    assert got == pytest.approx(want, rel=1e-5)


def test_dense_dist_batch_mode_is_classification_dist_on_pixels_resolution_grad_and_errors():
    from densekd.losses import DIST, DenseDIST

    torch.manual_seed(22)
    s, t = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    flat = lambda x: x.permute(0, 2, 3, 1).reshape(-1, 5)  # noqa: E731  pixels as samples (the release)
    assert DenseDIST(T=2.0)(s, t).item() == pytest.approx(DIST(T=2.0)(flat(s), flat(t)).item(), rel=1e-6)
    # student at half resolution: bilinearly resized to the teacher's
    s_small = torch.randn(2, 5, 2, 2)
    up = F.interpolate(s_small, size=(4, 4), mode="bilinear", align_corners=False)
    assert DenseDIST()(s_small, t).item() == pytest.approx(DenseDIST()(up, t).item(), rel=1e-6)
    # logit standardisation per pixel
    z = lambda x: (x - x.mean(1, keepdim=True)) / (x.std(1, keepdim=True) + 1e-7)  # noqa: E731
    assert DenseDIST(logit_std=True)(s, t).item() == pytest.approx(DenseDIST()(z(s), z(t)).item(), rel=1e-6)
    sg, tg = s.clone().requires_grad_(True), t.clone().requires_grad_(True)
    DenseDIST()(sg, tg).backward()
    assert sg.grad.abs().sum() > 0 and tg.grad is None
    assert DenseDIST()([s, s], [t, t]).item() == pytest.approx(2 * DenseDIST()(s, t).item(), rel=1e-6)
    with pytest.raises(ValueError, match="classes"):
        DenseDIST()(torch.randn(2, 3, 4, 4), torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="intra"):
        DenseDIST(intra="pixel")
    assert "DenseDIST" in LOSSES and "Stronger Teacher" in DenseDIST.__doc__


# ---------------------------------------------------------------------------------------------- IFVD
def _ifv_map_loops(f, labels, ignore, num_classes):
    """Per image: prototype of each class = mean feature of its pixels (+1e-6 in the count); per labelled pixel
    the cosine with its prototype; None for unlabelled pixels."""
    B, C, H, W = f.shape
    out = {}
    for b in range(B):
        protos = {}
        for k in range(num_classes):
            pts = [(h, w) for h in range(H) for w in range(W) if labels[b][h][w] == k]
            if pts:
                protos[k] = [sum(f[b, c, h, w].item() for h, w in pts) / (len(pts) + 1e-6) for c in range(C)]
        for h in range(H):
            for w in range(W):
                k = labels[b][h][w]
                if k == ignore or not 0 <= k < num_classes:
                    continue
                v = [f[b, c, h, w].item() for c in range(C)]
                p = protos[k]
                dot = sum(a * q for a, q in zip(v, p))
                out[(b, h, w)] = dot / (max(math.sqrt(sum(a * a for a in v)), 1e-8)
                                        * max(math.sqrt(sum(q * q for q in p)), 1e-8))
    return out


def _ifvd_loops(s, t, target, num_classes=4, ignore=255, normalize="all"):
    B, _, H, W = s.shape
    Ht, Wt = target.shape[-2:]
    # nearest resize: source index floor(dst * in / out)
    labels = [[[int(target[b, (h * Ht) // H, (w * Wt) // W]) for w in range(W)] for h in range(H)] for b in range(B)]
    ms, mt = _ifv_map_loops(s, labels, ignore, num_classes), _ifv_map_loops(t, labels, ignore, num_classes)
    total = sum((ms[k] - mt[k]) ** 2 for k in ms)
    return total / (B * H * W if normalize == "all" else len(ms))


def test_ifvd_matches_loops_with_ignore_and_label_downsampling():
    from densekd.losses import IFVD

    torch.manual_seed(23)
    s, t = torch.randn(2, 3, 4, 5), torch.randn(2, 6, 4, 5)  # widths differ: no connector needed
    target = torch.randint(0, 4, (2, 8, 10))  # labels at twice the feature resolution
    target[0, :4, :4] = 255
    target[1, 6, 2] = 255
    target[1, 0, 0] = 7  # outside num_classes: unlabelled
    for normalize in ("all", "valid"):
        got = IFVD(num_classes=4, normalize=normalize)(s, t, target=target).item()
        assert got == pytest.approx(_ifvd_loops(s, t, target, normalize=normalize), rel=1e-5), normalize
    # the reference's nn.MSELoss over all pixels == 'all'; 'valid' is larger by B*H*W / n_valid
    built = LOSSES.build(dict(type="IFVD"), s_shapes=[s.shape], t_shapes=[t.shape], num_classes=4)
    assert built.num_classes == 4
    assert built(s, t, target=target).item() == pytest.approx(_ifvd_loops(s, t, target), rel=1e-5)


def test_ifvd_reference_form_with_per_pixel_prototype_maps():
    """The reference builds a prototype map (each pixel replaced by its class centre, unlabelled pixels keep
    their feature) and takes nn.MSELoss of the two cosine maps over ALL pixels: same value as normalize='all'."""
    from densekd.losses import IFVD

    torch.manual_seed(24)
    s, t = torch.randn(2, 4, 3, 3), torch.randn(2, 5, 3, 3)
    labels = torch.randint(0, 3, (2, 3, 3))
    labels[0, 1, 1] = 255

    def reference_map(f):
        center = f.clone()
        for k in range(3):
            m = (labels[:, None] == k).float().expand_as(f)
            mean = (m * f).sum((-1, -2)) / (m.sum((-1, -2)) + 1e-6)
            center = (1 - m) * center + m * mean[..., None, None]
        return F.cosine_similarity(f, center, dim=1)

    want = F.mse_loss(reference_map(s), reference_map(t))
    assert IFVD(num_classes=3)(s, t, target=labels).item() == pytest.approx(want.item(), rel=1e-5)


def test_ifvd_gradients_and_errors():
    from densekd.losses import IFVD

    torch.manual_seed(25)
    s = torch.randn(2, 3, 4, 4, requires_grad=True)
    t = torch.randn(2, 5, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, 0, 0] = 255
    IFVD()(s, t, target=target).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    assert torch.all(s.grad[:, :, 0, 0] == 0)  # unlabelled pixels teach nothing
    with pytest.raises(ValueError, match="labels"):
        IFVD()(s, t)
    with pytest.raises(ValueError, match="spatial size"):
        IFVD()(s, torch.randn(2, 5, 2, 2), target=target)
    with pytest.raises(ValueError, match="normalize"):
        IFVD(normalize="sum")
    assert "IFVD" in LOSSES and "Intra-class Feature Variation" in IFVD.__doc__


# ---------------------------------------------------------------------------------------------- reference normalisations
def test_cwd_divides_by_the_students_channels_as_cirkd():
    """CIRKD's CriterionCWD reads n, c from the student map before its 1x1 connector: loss = sum / (B * Cs)."""
    torch.manual_seed(26)
    cs, ct = 3, 6
    s, t = torch.randn(2, cs, 4, 4), torch.randn(2, ct, 4, 4)
    cirkd = LOSSES.build(dict(type="CWD", T=4.0), s_shapes=[s.shape], t_shapes=[t.shape])
    paper = LOSSES.build(dict(type="CWD", T=4.0, channel_norm="teacher"), s_shapes=[s.shape], t_shapes=[t.shape])
    paper.load_state_dict(cirkd.state_dict())
    assert cirkd.channel_norm == "student"
    with torch.no_grad():
        mapped = cirkd.connectors[0](s)
    kl_sum = _cwd_loops(mapped, t, 4.0) * (2 * ct)  # the loops divide by B * Ct: undo it
    assert cirkd(s, t).item() == pytest.approx(kl_sum / (2 * cs), rel=1e-5)
    assert paper(s, t).item() == pytest.approx(kl_sum / (2 * ct), rel=1e-5)
    assert cirkd(s, t).item() / paper(s, t).item() == pytest.approx(ct / cs, rel=1e-6)
    # equal widths: the two agree
    u = torch.randn(2, ct, 4, 4)
    assert CWD()(u, t).item() == pytest.approx(CWD(channel_norm="teacher")(u, t).item(), rel=1e-7)
    with pytest.raises(ValueError, match="channel_norm"):
        CWD(channel_norm="mean")


def test_pairwise_cirkd_setting_differentiates_through_the_norm_as_f_normalize():
    """CIRKD's CriterionStructuralKD: 2x2 max pooling, F.normalize (norm not detached), mean over B*N^2."""
    torch.manual_seed(27)
    s0, t = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8)

    def cirkd(s):
        def sim(f):
            f = F.normalize(F.max_pool2d(f, 2, 2).flatten(2), p=2, dim=1)
            return torch.bmm(f.transpose(1, 2), f)
        return ((sim(s) - sim(t)) ** 2).mean()

    ref = s0.clone().requires_grad_(True)
    want = cirkd(ref)
    want.backward()
    for detach_norm, same in ((False, True), (True, False)):
        sg = s0.clone().requires_grad_(True)
        got = PairWiseKD(grid=(4, 4), detach_norm=detach_norm)(sg, t)
        got.backward()
        assert got.item() == pytest.approx(want.item(), rel=1e-5)  # the value does not depend on the detach
        assert torch.allclose(sg.grad, ref.grad, rtol=1e-4, atol=1e-7) == same, detach_norm
    # and the CIRKD config sets it
    from densekd.config import load_config
    skd = load_config(REPO / "configs/cityscapes/cirkd/deeplabv3_r18_skd.py")["distill"]
    assert next(t for t in skd if t["type"] == "PairWiseKD")["detach_norm"] is False
