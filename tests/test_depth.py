"""Depth estimation: NYU metrics against hand computations, the task's losses, the depth model, DepthKD."""
import math

import numpy as np
import pytest
import torch

from densekd.metrics.depth import DEPTH_METRICS, eigen_crop_mask, image_depth_metrics
from densekd.registry import LOSSES, MODELS, TASKS
from densekd.tasks.depth import berhu_loss, colorize_depth, silog_loss


def hand_metrics(p, g):
    """The NYU metrics of one image written out in numpy (valid pixels already selected)."""
    p, g = np.asarray(p, dtype=np.float64), np.asarray(g, dtype=np.float64)
    ratio = np.maximum(p / g, g / p)
    d = np.log(p) - np.log(g)
    return {"abs_rel": np.mean(np.abs(p - g) / g), "sq_rel": np.mean((p - g) ** 2 / g),
            "rmse": np.sqrt(np.mean((p - g) ** 2)), "rmse_log": np.sqrt(np.mean(d ** 2)),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(g))), "delta1": np.mean(ratio < 1.25),
            "delta2": np.mean(ratio < 1.25 ** 2), "delta3": np.mean(ratio < 1.25 ** 3),
            "silog": 100 * np.sqrt(np.mean(d ** 2) - np.mean(d) ** 2)}


def test_metrics_of_a_hand_made_image():
    gt = torch.tensor([[[1.0, 2.0], [4.0, 0.0]]])  # one missing pixel
    pred = torch.tensor([[[1.1, 3.0], [4.0, 7.0]]])
    row = image_depth_metrics(pred, gt, crop=None)[0]
    # by hand: pixels (1.1 vs 1), (3 vs 2), (4 vs 4)
    assert row[DEPTH_METRICS.index("abs_rel")].item() == pytest.approx((0.1 + 0.5 + 0) / 3)
    assert row[DEPTH_METRICS.index("rmse")].item() == pytest.approx(math.sqrt((0.01 + 1 + 0) / 3))
    assert row[DEPTH_METRICS.index("delta1")].item() == pytest.approx(2 / 3)  # 3/2 = 1.5 fails 1.25
    assert row[DEPTH_METRICS.index("delta2")].item() == pytest.approx(1.0)
    want = hand_metrics([1.1, 3.0, 4.0], [1.0, 2.0, 4.0])
    for k, v in want.items():
        assert row[DEPTH_METRICS.index(k)].item() == pytest.approx(v, rel=1e-6), k  # float32 inputs


def test_eigen_crop_clamping_and_per_image_averaging():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 12.0, size=(2, 480, 640))
    gt[0, 100:120, 200:260] = 0  # missing
    pred = gt * rng.uniform(0.7, 1.4, size=gt.shape)
    pred[1, 200, 300] = 50.0  # clamped to 10
    mask = eigen_crop_mask(480, 640).numpy()
    assert mask.sum() == (471 - 45) * (601 - 41) and mask[45, 41] and not mask[44, 41] and not mask[45, 601]
    rows = image_depth_metrics(torch.from_numpy(pred), torch.from_numpy(gt))
    per_image = []
    for i in range(2):
        valid = mask & (gt[i] > 1e-3) & (gt[i] <= 10)
        p = np.clip(pred[i][valid], 1e-3, 10)
        per_image.append(hand_metrics(p, gt[i][valid]))
    for k in DEPTH_METRICS:
        for i in range(2):
            assert rows[i, DEPTH_METRICS.index(k)].item() == pytest.approx(per_image[i][k], rel=1e-9), k
    # the evaluator averages per image (not per pixel) and ignores an image without valid depth
    task = TASKS.build(dict(type="depth"))
    ev = task.evaluator()
    empty = np.zeros((1, 480, 640))
    ev.update(torch.from_numpy(np.concatenate([pred, empty])).float()[:, None],
              {"depth": torch.from_numpy(np.concatenate([gt, empty])).float()[:, None]})
    out = ev.compute()
    for k in DEPTH_METRICS:
        assert out[k] == pytest.approx((per_image[0][k] + per_image[1][k]) / 2, rel=1e-5), k
    assert out["images_without_valid_depth"] == 1


def test_crop_scales_to_other_frame_sizes():
    m = eigen_crop_mask(96, 128)
    rows, cols = m.any(1).nonzero()[:, 0], m.any(0).nonzero()[:, 0]
    assert (rows.min().item(), rows.max().item() + 1) == (round(45 * 0.2), round(471 * 0.2))
    assert (cols.min().item(), cols.max().item() + 1) == (round(41 * 0.2), round(601 * 0.2))


def test_depth_task_losses_follow_their_formulas_on_valid_pixels():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 8, 8) * 5 + 0.5
    gt[0, 0, :2] = 0  # missing
    pred = (gt + torch.randn_like(gt) * 0.3).clamp_min(0.1).requires_grad_()
    valid = gt > 1e-3
    d = pred[valid].log() - gt[valid].log()
    silog = TASKS.build(dict(type="depth")).loss(pred, {"depth": gt})["depth"]
    assert silog.item() == pytest.approx(10 * math.sqrt((d ** 2).mean().item() - 0.85 * d.mean().item() ** 2), rel=1e-4)
    r = (pred[valid] - gt[valid]).abs()
    c = 0.2 * r.max().item()
    berhu = torch.where(r <= c, r, (r ** 2 + c ** 2) / (2 * c)).mean()
    assert TASKS.build(dict(type="depth", loss="berhu")).loss(pred, {"depth": gt})["depth"].item() == \
        pytest.approx(berhu.item(), rel=1e-6)
    l1 = TASKS.build(dict(type="depth", loss="l1")).loss(pred, {"depth": gt})["depth"]
    assert l1.item() == pytest.approx(r.mean().item(), rel=1e-6)
    l1.backward()
    assert (pred.grad[~valid] == 0).all() and pred.grad[valid].abs().sum() > 0  # missing depth never teaches
    # a lower-resolution prediction is upsampled to the target; an all-missing batch gives zero, not NaN
    small = torch.full((2, 1, 4, 4), 2.0, requires_grad=True)
    assert math.isfinite(TASKS.build(dict(type="depth")).loss(small, {"depth": gt})["depth"].item())
    zero = TASKS.build(dict(type="depth")).loss(small, {"depth": torch.zeros(2, 1, 8, 8)})["depth"]
    assert zero.item() == 0.0
    assert silog_loss is not None and berhu_loss is not None


def test_depth_task_errors_and_report():
    with pytest.raises(ValueError, match="depth loss must be one of"):
        TASKS.build(dict(type="depth", loss="l2"))
    task = TASKS.build(dict(type="depth"))
    with pytest.raises(ValueError, match="B x 1 x H x W"):
        task.loss(torch.rand(2, 3, 4, 4), {"depth": torch.rand(2, 1, 4, 4)})
    with pytest.raises(KeyError, match="task.target_key"):
        task.loss(torch.rand(2, 1, 4, 4), {"target": torch.rand(2, 1, 4, 4)})
    report = task.metric_report({"abs_rel": 0.1234, "delta1": 0.9, "mIoU": 3})
    assert report.splitlines()[0] == "| abs_rel ↓ | delta1 ↑ |" and report.splitlines()[2] == "| 0.1234 | 0.9000 |"
    assert task.primary_metric == "abs_rel" and task.is_better(0.1, 0.2) and not task.is_better(0.3, 0.2)


def test_depth_pictures_share_one_range_and_black_out_missing_depth():
    task = TASKS.build(dict(type="depth", vis_range=(1.0, 3.0)))
    gt = torch.tensor([[[1.0, 3.0], [0.0, 2.0]]])
    panels = dict(task.panels({"depth": gt}, {"student": torch.tensor([[[1.0, 3.0], [2.0, 5.0]]])}))
    g, s = panels["ground truth"], panels["student"]
    assert (g[1, 0] == 0).all()  # missing
    assert (g[0, 0] == s[0, 0]).all() and (g[0, 1] == s[0, 1]).all()  # same depth, same colour
    assert (s[1, 1] == s[0, 1]).all()  # beyond the range: clamped to the far colour
    assert g[0, 0].sum() < g[0, 1].sum()  # near is darker than far (magma)
    assert task.legend().shape == (24, 256, 3)
    assert colorize_depth(np.ones((3, 4)), 0, 2).shape == (3, 4, 3)


@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "exp"])
def test_depth_model_outputs_positive_bounded_depth_at_input_size(activation):
    torch.manual_seed(0)
    m = MODELS.build(dict(type="depth_model", arch="FPN", encoder="resnet18", max_depth=10.0, activation=activation))
    x = torch.randn(2, 3, 40, 56)  # not a multiple of the output stride
    y = m(x)
    assert y.shape == (2, 1, 40, 56) and (y > 0).all()
    if activation != "softplus":
        assert (y <= 10.0).all()
    assert "decoder" in m.feature_taps["feats"]  # segmentation taps apply unchanged
    with pytest.raises(ValueError, match="one output channel"):
        MODELS.build(dict(type="depth_model", num_classes=19))


def test_depth_kd_is_masked_l1_or_silog_against_the_detached_teacher():
    torch.manual_seed(0)
    s = (torch.rand(2, 1, 6, 6) * 4 + 0.5).requires_grad_()
    t = (torch.rand(2, 1, 6, 6) * 4 + 0.5).requires_grad_()
    gt = torch.rand(2, 1, 6, 6) * 4 + 0.5
    gt[:, :, :3] = 0  # top half missing
    t_det = t.detach()
    loss = LOSSES.build(dict(type="DepthKD"))(s, t, depth=gt)
    assert loss.item() == pytest.approx((s - t_det).abs().mean().item(), rel=1e-6)  # 'all': every pixel
    valid = LOSSES.build(dict(type="DepthKD", mask="valid"))(s, t, depth=gt)
    m = gt > 1e-3
    assert valid.item() == pytest.approx((s - t_det)[m].abs().mean().item(), rel=1e-6)
    tau = 0.2
    w = torch.where(m, torch.exp(-(t_det - gt).abs() / (tau * gt.clamp_min(1e-3)) ), torch.ones_like(gt))
    conf = LOSSES.build(dict(type="DepthKD", confidence=tau))(s, t, depth=gt)
    assert conf.item() == pytest.approx(((w * (s - t_det).abs()).sum() / w.sum()).item(), rel=1e-5)
    d = s.log() - t_det.log()
    sil = LOSSES.build(dict(type="DepthKD", loss="silog"))(s, t, depth=gt)
    assert sil.item() == pytest.approx(10 * math.sqrt((d ** 2).mean().item() - 0.85 * d.mean().item() ** 2), rel=1e-4)
    valid.backward()
    assert t.grad is None and (s.grad[~m] == 0).all() and s.grad[m].abs().sum() > 0
    with pytest.raises(ValueError, match="Tap the depth output"):
        LOSSES.build(dict(type="DepthKD"))(torch.rand(2, 8, 6, 6), torch.rand(2, 8, 6, 6))
    with pytest.raises(KeyError, match="needs the ground truth"):
        LOSSES.build(dict(type="DepthKD", mask="valid"))(s, t)
