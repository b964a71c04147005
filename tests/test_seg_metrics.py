"""Confusion-matrix metrics and the segmentation task (loss, sliding-window / multi-scale inference, evaluator)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import densekd.tasks.segmentation  # noqa: F401  (registers the task)
from densekd.metrics.segmentation import confusion_matrix, segmentation_metrics
from densekd.registry import TASKS
from densekd.tasks.segmentation import SegmentationTask


# ---------------------------------------------------------------------------------------------- metrics
def test_confusion_matrix_hand_case():
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 0, 1, 2]])
    cm = confusion_matrix(pred, target, num_classes=4)
    expected = torch.tensor([
        [1, 1, 0, 0],   # gt 0: one right, one called 1
        [0, 2, 1, 0],   # gt 1: two right, one called 2
        [1, 0, 1, 0],   # gt 2: one right, one called 0
        [0, 0, 0, 0],   # gt 3: absent (the 255 pixel predicted as 2 is not counted)
    ])
    assert torch.equal(cm, expected)


def test_segmentation_metrics_hand_case():
    # classes: 0 and 1 present, 2 only predicted (IoU 0, counts), 3 absent everywhere (NaN, excluded)
    cm = np.array([
        [3, 1, 0, 0],
        [0, 2, 2, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ])
    res = segmentation_metrics(cm, ["a", "b", "c", "d"])
    # IoU_a = 3 / (4 + 3 - 3) = 0.75 ; IoU_b = 2 / (4 + 3 - 2) = 0.4 ; IoU_c = 0 / (0 + 2 - 0) = 0
    assert res["IoU/a"] == pytest.approx(75.0) and res["IoU/b"] == pytest.approx(40.0)
    assert res["IoU/c"] == 0.0 and math.isnan(res["IoU/d"])
    assert res["mIoU"] == pytest.approx((75.0 + 40.0 + 0.0) / 3)
    assert res["pixel_acc"] == pytest.approx(100.0 * 5 / 8)
    # per-class acc: a 3/4, b 2/4; c and d have no ground truth -> excluded
    assert res["mean_acc"] == pytest.approx(100.0 * (0.75 + 0.5) / 2)
    empty = segmentation_metrics(np.zeros((3, 3)))
    assert math.isnan(empty["mIoU"]) and math.isnan(empty["pixel_acc"])


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="ground truth"):
        confusion_matrix(torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 7, 255]), 3)
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(torch.tensor([0, 5, 1, 1]), torch.tensor([0, 1, 2, 255]), 3)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(torch.zeros(4), torch.zeros(4, dtype=torch.long), 3)


# ---------------------------------------------------------------------------------------------- loss
def _manual_ce(logits, target, ignore=255, weight=None):
    """Independent CE: log-softmax by hand, gather the target class, (weighted) mean over valid pixels."""
    logp = logits - logits.exp().sum(1, keepdim=True).log()
    valid = target != ignore
    t = target.clone()
    t[~valid] = 0
    nll = -logp.gather(1, t.unsqueeze(1)).squeeze(1)
    w = torch.ones_like(nll) if weight is None else weight[t]
    w = w * valid
    return (nll * w).sum() / w.sum()


def test_loss_matches_manual_cross_entropy_with_aux_and_ignore():
    torch.manual_seed(0)
    task = SegmentationTask(num_classes=4, aux_weight=0.4)
    out = torch.randn(2, 4, 6, 5, requires_grad=True)
    aux = torch.randn(2, 4, 6, 5, requires_grad=True)
    target = torch.randint(0, 4, (2, 6, 5))
    target[0, :2] = 255
    losses = task.loss({"out": out, "aux": aux}, {"target": target})
    assert set(losses) == {"seg", "aux"}
    assert torch.allclose(losses["seg"], _manual_ce(out, target))
    assert torch.allclose(losses["aux"], 0.4 * _manual_ce(aux, target))
    (losses["seg"] + losses["aux"]).backward()
    # ignored pixels get no gradient
    assert out.grad[0, :, :2].abs().sum() == 0 and out.grad[0, :, 2:].abs().sum() > 0
    assert set(task.loss(out.detach(), {"target": target})) == {"seg"}


def test_loss_class_weights_and_upsampling():
    torch.manual_seed(1)
    w = [1.0, 2.0, 0.5]
    task = SegmentationTask(num_classes=3, class_weights=w)
    small = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, 0] = 255
    loss = task.loss(small, {"target": target})["seg"]
    up = F.interpolate(small, size=(8, 8), mode="bilinear", align_corners=False)
    assert torch.allclose(loss, _manual_ce(up, target, weight=torch.tensor(w)))


def test_loss_all_ignored_is_zero_not_nan():
    task = SegmentationTask(num_classes=3)
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = task.loss(logits, {"target": torch.full((1, 4, 4), 255)})["seg"]
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(logits.grad).all()


def test_loss_channel_mismatch_error():
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationTask(num_classes=19).loss(torch.randn(1, 5, 4, 4), {"target": torch.zeros(1, 4, 4).long()})


# ---------------------------------------------------------------------------------------------- evaluator
def _numpy_metrics(preds, targets, n, ignore=255):
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != ignore
    p, t = p[keep], t[keep]
    ious, accs = [], []
    for c in range(n):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        if union:
            ious.append(inter / union)
        if np.sum(t == c):
            accs.append(inter / np.sum(t == c))
    return 100 * np.mean(ious), 100 * np.mean(p == t), 100 * np.mean(accs), ious


def test_evaluator_matches_numpy_and_rank_sum():
    torch.manual_seed(0)
    n = 5
    task = SegmentationTask(num_classes=n, class_names=list("abcde"))
    ev, ev_a, ev_b = task.evaluator(), task.evaluator(), task.evaluator()
    preds, targets = [], []
    for i in range(4):
        scores = torch.randn(2, n, 6, 7)
        target = torch.randint(0, n - 1, (2, 6, 7))  # class 'e' never in the ground truth
        target[target == 2] = torch.where(torch.rand_like(target[target == 2].float()) < 0.5, 2, 255)
        batch = {"target": target}
        ev.update(scores, batch)
        (ev_a if i % 2 else ev_b).update(scores, batch)
        preds.append(scores.argmax(1).numpy())
        targets.append(target.numpy())
    res = ev.compute()
    miou, pacc, macc, _ = _numpy_metrics(preds, targets, n)
    assert res["mIoU"] == pytest.approx(miou) and res["pixel_acc"] == pytest.approx(pacc)
    assert res["mean_acc"] == pytest.approx(macc)
    p, t = np.concatenate([x.ravel() for x in preds]), np.concatenate([x.ravel() for x in targets])
    keep = t != 255
    inter = np.sum((p == 0) & (t == 0) & keep)
    union = np.sum(((p == 0) | (t == 0)) & keep)
    assert res["IoU/a"] == pytest.approx(100 * inter / union)
    assert res["IoU/e"] == 0.0  # predicted, never true
    assert int(ev.state["confmat"].sum()) == int(keep.sum())

    # two "ranks": summing their states gives the single-process result
    def fake_all_reduce(tensor, other=ev_b):
        return tensor + other.state["confmat"]

    ev_a.reduce(fake_all_reduce)
    assert ev_a.compute() == res


def test_ignore_pixels_never_counted():
    task = SegmentationTask(num_classes=3)
    target = torch.tensor([[[0, 1, 255, 255]]])
    base = torch.tensor([[[0, 1, 0, 0]]])
    other = torch.tensor([[[0, 1, 2, 1]]])
    r1, r2 = task.evaluator(), task.evaluator()
    r1.update(base, {"target": target})
    r2.update(other, {"target": target})
    assert r1.compute() == r2.compute()
    assert r1.compute()["mIoU"] == 100.0 and int(r1.state["confmat"].sum()) == 2


def test_evaluator_resizes_scores_to_label():
    ev = SegmentationTask(num_classes=2).evaluator()
    scores = torch.zeros(1, 2, 2, 2)
    scores[0, 0, :, 0] = 1.0  # left half class 0
    scores[0, 1, :, 1] = 1.0  # right half class 1
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :, 2:] = 1
    ev.update(scores, {"target": target})
    assert ev.compute()["pixel_acc"] == 100.0


def test_task_without_class_names_uses_indices_never_cityscapes():
    task = TASKS.get("segmentation")()  # num_classes=19, nothing about the dataset
    assert task.metrics == ("mIoU", "pixel_acc", "mean_acc") and task.primary_metric == "mIoU"
    assert task.class_names == [f"class{i}" for i in range(19)]
    ev = task.evaluator()
    ev.update(torch.zeros(1, 2, 2, dtype=torch.long), {"target": torch.zeros(1, 2, 2, dtype=torch.long)})
    res = ev.compute()
    assert res["IoU/class0"] == 100.0 and "IoU/road" not in res


def test_dataset_class_names_and_palette_reach_the_task():
    from densekd.data.cityscapes import CLASSES, PALETTE, Cityscapes
    from densekd.data.synthetic_cityscapes import SyntheticCityscapes
    from densekd.tasks.base import dataset_metadata

    ds = SyntheticCityscapes(split="val", num_samples=2)
    meta = dataset_metadata(ds)
    assert meta == {"class_names": list(CLASSES), "palette": list(PALETTE)}
    assert dataset_metadata(Cityscapes) == meta  # class attributes of the real loader too
    task = TASKS.build(dict(type="segmentation"), **meta)
    assert task.class_names[13] == "car" and task.palette[10] == (70, 130, 180)
    ev = task.evaluator()
    target = torch.tensor([[[0, 13], [13, 255]]])
    ev.update(torch.tensor([[[0, 13], [0, 4]]]), {"target": target})
    res = ev.compute()
    assert res["IoU/road"] == pytest.approx(50.0) and res["IoU/car"] == pytest.approx(50.0)
    assert not any(k.startswith("IoU/class") for k in res)
    # a config's own names win over the dataset's (the registry only fills unset arguments)
    own = TASKS.build(dict(type="segmentation", num_classes=2, class_names=["bg", "fg"], palette=[(0, 0, 1),
                                                                                                  (0, 0, 2)]),
                      **meta)
    assert own.class_names == ["bg", "fg"] and own.palette == [(0, 0, 1), (0, 0, 2)]


def test_class_names_and_palette_must_match_num_classes():
    with pytest.raises(ValueError, match="num_classes=3"):
        SegmentationTask(num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="list of num_classes"):
        SegmentationTask(num_classes=3, class_names="abc")
    with pytest.raises(ValueError, match="2 palette colours given for num_classes=3"):
        SegmentationTask(num_classes=3, palette=[(0, 0, 0), (1, 1, 1)])
    with pytest.raises(ValueError, match="0..255"):
        SegmentationTask(num_classes=1, palette=[(0, 0, 300)])
    with pytest.raises(ValueError, match="0..255"):
        SegmentationTask(num_classes=1, palette=[(0.5, 0, 0)])


# The PASCAL VOC colours of its 20 object classes (aeroplane ... tvmonitor), as published with the devkit.
VOC_OBJECT_COLOURS = [
    (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128), (128, 128, 128),
    (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
    (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]


def _voc_reference(n):
    """The devkit's labelcolormap, written out with bitget as in VOCdevkit/VOCcode/VOClabelcolormap.m."""
    def bitget(v, i):
        return (v >> i) & 1

    cmap = np.zeros((n, 3), dtype=np.int64)
    for i in range(n):
        idx, r, g, b = i, 0, 0, 0
        for j in range(8):
            r = r | (bitget(idx, 0) << (7 - j))
            g = g | (bitget(idx, 1) << (7 - j))
            b = b | (bitget(idx, 2) << (7 - j))
            idx = idx >> 3
        cmap[i] = (r, g, b)
    return [tuple(int(v) for v in c) for c in cmap]


def test_generated_palette_is_the_voc_colour_map_without_black():
    from densekd.tasks.segmentation import default_palette, voc_palette

    assert voc_palette(21) == [(0, 0, 0)] + VOC_OBJECT_COLOURS
    assert voc_palette(256) == _voc_reference(256) and len(set(voc_palette(256))) == 256
    assert default_palette(20) == VOC_OBJECT_COLOURS
    task = SegmentationTask(num_classes=40)
    assert task.palette == _voc_reference(41)[1:] and (0, 0, 0) not in task.palette


def test_segmentation_pictures_colour_ids_with_the_palette():
    palette = [(10, 20, 30), (40, 50, 60), (70, 80, 90)]
    task = SegmentationTask(num_classes=3, palette=palette, ignore_index=255)
    target = torch.tensor([[0, 2], [255, 1]])
    assert task.draw_target(target).tolist() == [[[10, 20, 30], [70, 80, 90]], [[0, 0, 0], [40, 50, 60]]]
    scores = torch.zeros(3, 2, 2)
    scores[1, 0, 0] = scores[2, 0, 1] = scores[0, 1, :] = 1.0
    assert task.draw_prediction(scores).tolist() == [[[40, 50, 60], [70, 80, 90]], [[10, 20, 30], [10, 20, 30]]]
    assert task.draw_prediction(np.array([[2, 2], [0, 1]])).dtype == np.uint8
    with pytest.raises(ValueError, match="4 channels"):
        task.draw_prediction(torch.zeros(4, 2, 2))
    key = task.legend()
    assert key.shape == (3 * 16, 160, 3) and tuple(key[2 * 16 + 8, 8]) == palette[2]
    # an ignore index inside the id range is still drawn black
    odd = SegmentationTask(num_classes=3, palette=palette, ignore_index=1)
    assert odd.draw_target(np.array([[1, 0]])).tolist() == [[[0, 0, 0], [10, 20, 30]]]


def test_metric_report_is_the_per_class_iou_table():
    metrics = {"mIoU": 61.25, "pixel_acc": 90.0, "IoU/road": 97.125, "IoU/traffic sign": 25.375, "mean_acc": 70.0}
    expected = "| class | IoU (%) |\n|---|---|\n| road | 97.12 |\n| traffic sign | 25.38 |\n"
    task = SegmentationTask()
    assert task.metric_report(metrics) == expected
    assert task.metric_report({"mIoU": 50.0}) == ""
    from densekd.tasks.base import Task

    assert Task().metric_report(metrics) == "" and Task().legend() is None


# ---------------------------------------------------------------------------------------------- inference
class Pointwise(nn.Module):
    """1x1 conv: exactly translation-equivariant, no context."""

    def __init__(self, n=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, n, 1)

    def forward(self, x):
        return self.conv(x)


class Local3x3(nn.Module):
    """3x3 conv, zero padding: equivariant away from the image/window border."""

    def __init__(self, n=3):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, n, 3, padding=1)

    def forward(self, x):
        return self.conv(x) * 3


def test_slide_equals_whole_for_pointwise_model():
    torch.manual_seed(0)
    model = Pointwise()
    x = torch.randn(2, 3, 23, 37)  # not a multiple of the stride: edge windows are shifted back inside
    whole = SegmentationTask(num_classes=3).predict(model, x)
    slide = SegmentationTask(num_classes=3, mode="slide", crop_size=(10, 16), stride=(7, 9)).predict(model, x)
    assert slide.shape == (2, 3, 23, 37)
    assert torch.allclose(whole, slide, atol=1e-6)
    assert torch.allclose(whole, model(x).softmax(1), atol=1e-6)


def test_slide_equals_whole_in_window_interiors_only():
    torch.manual_seed(0)
    model = Local3x3()
    x = torch.randn(1, 3, 16, 24)
    whole = SegmentationTask(num_classes=3).predict(model, x)
    slide = SegmentationTask(num_classes=3, mode="slide", crop_size=(8, 12), stride=(8, 12)).predict(model, x)
    interior = torch.zeros(16, 24, dtype=torch.bool)
    for y0 in (0, 8):
        for x0 in (0, 12):
            interior[y0 + 1:y0 + 7, x0 + 1:x0 + 11] = True
    # pixels at the image border see the same zero padding in both modes
    interior[0, :] = interior[-1, :] = True
    interior[:, 0] = interior[:, -1] = True
    interior[[7, 8], :] = False
    interior[:, [11, 12]] = False
    assert torch.allclose(whole[..., interior], slide[..., interior], atol=1e-6)
    seams = torch.zeros_like(interior)
    seams[[7, 8], 1:-1] = True
    assert not torch.allclose(whole[..., seams], slide[..., seams], atol=1e-3)


def test_flip_and_multiscale_average():
    class Ramp(nn.Module):  # scores depend on the absolute column: not flip-equivariant
        def forward(self, x):
            col = torch.linspace(-2, 2, x.shape[-1]).view(1, 1, 1, -1)
            return torch.cat([x[:, :1] + col, x[:, 1:2] - col], 1)

    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 12)
    model = Ramp()
    p = SegmentationTask(num_classes=2, flip=True).predict(model, x)
    ref = 0.5 * (model(x).softmax(1) + model(x.flip(-1)).softmax(1).flip(-1))
    assert torch.allclose(p, ref, atol=1e-6)
    p2 = SegmentationTask(num_classes=2, scales=(0.5, 1.0)).predict(model, x)
    half = F.interpolate(x, size=(4, 6), mode="bilinear", align_corners=False)
    ref2 = 0.5 * (model(x).softmax(1) + F.interpolate(model(half).softmax(1), size=(8, 12), mode="bilinear",
                                                      align_corners=False))
    assert torch.allclose(p2, ref2, atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(1, 8, 12), atol=1e-5)


def test_task_bad_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        SegmentationTask(mode="slide")
    with pytest.raises(ValueError, match="whole"):
        SegmentationTask(mode="tiles")
    with pytest.raises(ValueError, match="class_weights"):
        SegmentationTask(num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationTask(num_classes=3).predict(Pointwise(4), torch.randn(1, 3, 4, 4))
