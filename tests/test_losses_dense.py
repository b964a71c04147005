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
    for chunk in (1, 3, 7, n_rows, 10_000, None):
        loss = PairWiseKD(grid=(4, 5), cross_image=cross_image, chunk_size=chunk, detach_norm=detach_norm)
        sc = s0.clone().requires_grad_(True)
        got = loss(sc, t)
        got.backward()
        assert got.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-9), chunk
        torch.testing.assert_close(sc.grad, sd.grad, rtol=1e-4, atol=1e-7)
    # detaching the norm (the reference) really changes the gradient
    other = s0.clone().requires_grad_(True)
    _dense_pairwise(other, t, cross_image, not detach_norm, pool_fn).backward()
    assert not torch.allclose(other.grad, sd.grad, rtol=1e-3, atol=1e-6)


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
    # value = CWD on the connector's output (connector in the same mode)
    with torch.no_grad():
        mapped = loss.connectors[0](s)
    assert out.item() == pytest.approx(_cwd_loops(mapped, t.detach(), 2.0), rel=1e-5)
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
