"""Second input views: the ExtraViews capability (the distiller runs student and teachers on batch[key] and hands
the term views={key: (student, teacher)}) and the StrongAugmentView data wrapper with its RandAugment."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from densekd.data.cifar import to_normalized_tensor
from densekd.data.multiview import CUTOUT_FILL, RAND_AUGMENT_OPS, StrongAugmentView, cutout, rand_augment
from densekd.data.sampling import forked_rng
from densekd.distill.distiller import Distiller
from densekd.losses.base import CapabilityError, ExtraViews, check_capabilities
from densekd.registry import DATASETS, LOSSES, TASKS

CLS = TASKS.build(dict(type="classification"))


class Tiny(nn.Module):
    """conv -> ReLU -> pool -> linear, counting its forwards."""

    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, classes)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


@LOSSES.register("_ViewProbe")
class ViewProbe(ExtraViews, nn.Module):
    """Test-only: records what it receives; loss = mean of (student_view - teacher_view)^2 + mean student^2."""

    extra_views = ("image_strong",)

    def __init__(self, view: str = "image_strong"):
        super().__init__()
        self.extra_views = (view,)
        self.seen = []

    def forward(self, student, teacher, views=None, **extra):
        self.seen.append((student, teacher, views))
        (key,) = self.extra_views
        s_v, t_v = views[key]
        return (s_v - t_v).pow(2).mean() + student.pow(2).mean()


def make(terms, teachers=1):
    torch.manual_seed(0)
    student = Tiny()
    ts = [Tiny() for _ in range(teachers)]
    batch = {"image": torch.randn(4, 3, 8, 8), "image_strong": torch.randn(4, 3, 8, 8), "other": torch.randn(4, 3, 8, 8),
             "target": torch.tensor([0, 1, 2, 3])}
    d = Distiller(student, CLS, ts, terms, probe=batch["image"][:2], num_classes=5)
    d.train()
    return d, student, ts, batch


def test_the_distiller_runs_student_and_teacher_on_the_view_and_passes_their_outputs():
    d, student, (teacher,), batch = make([dict(type="_ViewProbe", weight=2.0)])
    student.calls = teacher.calls = 0
    _, losses = d(batch)
    assert student.calls == 2 and teacher.calls == 2  # main input + the strong view
    (s, t, views), = d.losses["_ViewProbe"].seen
    s_v, t_v = views["image_strong"]
    with torch.no_grad():
        assert torch.allclose(s_v, student(batch["image_strong"])) and torch.allclose(t_v, teacher(batch["image_strong"]))
        assert torch.allclose(s, student(batch["image"])) and torch.allclose(t, teacher(batch["image"]))
    assert s_v.requires_grad and not t_v.requires_grad
    want = 2.0 * ((s_v - t_v).pow(2).mean() + s.pow(2).mean())
    assert torch.allclose(losses["_ViewProbe"], want)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_terms_reading_one_view_share_its_forwards_and_other_keys_get_their_own():
    d, student, (teacher,), batch = make([dict(type="_ViewProbe", name="a"), dict(type="_ViewProbe", name="b"),
                                          dict(type="_ViewProbe", name="c", view="other"), dict(type="KD")])
    student.calls = teacher.calls = 0
    _, losses = d(batch)
    assert student.calls == 3 and teacher.calls == 3  # image, image_strong (shared by a and b), other
    assert set(losses) == {"cls", "a", "b", "c", "KD"}
    va = d.losses["a"].seen[0][2]["image_strong"][0]
    vb = d.losses["b"].seen[0][2]["image_strong"][0]
    vc = d.losses["c"].seen[0][2]["other"][0]
    assert va is vb and not torch.allclose(va, vc)


def test_separate_teachers_each_get_their_view_output():
    d, student, teachers, batch = make([dict(type="_ViewProbe", teachers="all", ensemble="separate")], teachers=2)
    d(batch)
    mods = d.term_modules(d.terms[0])
    with torch.no_grad():
        for m, t in zip(mods, teachers):
            assert torch.allclose(m.seen[0][2]["image_strong"][1], t(batch["image_strong"]))


def test_a_missing_view_names_the_key_and_the_wrapper():
    d, _, _, batch = make([dict(type="_ViewProbe")])
    del batch["image_strong"]
    with pytest.raises(KeyError, match="image_strong.*StrongAugmentView"):
        d(batch)


def test_extra_views_capability_is_checked():
    class NoKeys(ExtraViews, nn.Module):
        def forward(self, student, teacher, **extra):
            return student.sum()

    class Undeclared(nn.Module):
        extra_views = ("image_strong",)

        def forward(self, student, teacher, **extra):
            return student.sum()

    with pytest.raises(CapabilityError, match="extra_views"):
        check_capabilities(NoKeys)
    with pytest.raises(CapabilityError, match="does not declare the ExtraViews"):
        check_capabilities(Undeclared)


# ---------------------------------------------------------------------------------------------- StrongAugmentView
def inner(n=12, **kw):
    return DATASETS.build(dict(type="SyntheticCIFAR100", split="train", num_samples=n, **kw))


def test_strong_view_without_operations_is_the_raw_image_normalised():
    base = inner(augment=False)
    ds = StrongAugmentView(base, padding=0, flip=False, num_ops=0, max_cutout=0.0)
    for i in range(3):
        sample = ds[i]
        assert torch.equal(sample["image_strong"], sample["image"])
        raw, label = base.load(i)
        assert torch.equal(sample["image_strong"], to_normalized_tensor(raw, base.mean, base.std))
        assert sample["target"] == label


def test_strong_view_keys_shapes_reproducibility_and_metadata():
    ds = DATASETS.build(dict(type="StrongAugmentView", dataset=dict(type="SyntheticCIFAR100", split="train",
                                                                      num_samples=12)))
    with forked_rng(3):
        a = ds[5]
    with forked_rng(3):
        b = ds[5]
    with forked_rng(4):
        c = ds[5]
    assert set(a) == {"image", "target", "view", "image_strong"}
    assert a["image_strong"].shape == (3, 32, 32) and a["image_strong"].dtype == torch.float32
    assert torch.equal(a["image_strong"], b["image_strong"]) and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image_strong"], c["image_strong"])
    assert not torch.equal(a["image_strong"], a["image"])
    assert len(ds) == 12 and ds.num_classes == 100 and ds.targets == ds.dataset.targets
    assert ds.class_names == ds.dataset.class_names
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    assert batch["image_strong"].shape == (4, 3, 32, 32)


def test_strong_view_errors():
    class NoLoad(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return {"image": torch.zeros(3, 4, 4)}

    with pytest.raises(ValueError, match="load"):
        StrongAugmentView(NoLoad())
    with pytest.raises(ValueError, match="unknown or no operations"):
        StrongAugmentView(inner(), ops=["Blur"])
    with pytest.raises(ValueError, match="max_cutout"):
        StrongAugmentView(inner(), max_cutout=2.0)

    class Resized(torch.utils.data.Dataset):
        mean, std = (0.5,) * 3, (0.5,) * 3

        def __len__(self):
            return 1

        def load(self, i):
            return np.zeros((8, 8, 3), np.uint8), 0

        def __getitem__(self, i):
            return {"image": torch.zeros(3, 4, 4), "target": 0}

    with pytest.raises(ValueError, match="strong view is"):
        StrongAugmentView(Resized())[0]


def image(seed=0, size=8):
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def test_rand_augment_operations_at_given_magnitudes():
    x = image()
    op = lambda name, v: np.asarray(RAND_AUGMENT_OPS[name][0](Image.fromarray(x), v))  # noqa: E731
    assert np.array_equal(op("Identity", 0.3), x)
    assert np.array_equal(op("Solarize", 128.0), np.where(x < 128, x, 255 - x))
    assert np.array_equal(op("Posterize", 4.7), x & 0xF0)  # int(4.7) = 4 bits kept
    shifted = op("TranslateX", 0.25)  # 2 of 8 columns: output column j reads input column j + 2
    assert np.array_equal(shifted[:, :6], x[:, 2:]) and not shifted[:, 6:].any()
    down = op("TranslateY", -0.25)  # output row i reads input row i - 2
    assert np.array_equal(down[2:], x[:6]) and not down[:2].any()
    assert np.array_equal(op("Rotate", 0.0), x)
    assert {name: (lo, hi) for name, (_, lo, hi) in RAND_AUGMENT_OPS.items()} == {
        "AutoContrast": (0, 1), "Brightness": (0.05, 0.95), "Color": (0.05, 0.95), "Contrast": (0.05, 0.95),
        "Equalize": (0, 1), "Identity": (0, 1), "Posterize": (4, 8), "Rotate": (-30, 30), "Sharpness": (0.05, 0.95),
        "ShearX": (-0.3, 0.3), "ShearY": (-0.3, 0.3), "Solarize": (0, 256), "TranslateX": (-0.3, 0.3),
        "TranslateY": (-0.3, 0.3)}
    for name in RAND_AUGMENT_OPS:  # every operation keeps size and dtype at random magnitudes
        with forked_rng(1):
            y = rand_augment(x, num_ops=1, max_cutout=0.0, ops=[name])
        assert y.shape == x.shape and y.dtype == np.uint8 and y.flags.writeable


def test_cutout_paints_a_clipped_grey_square():
    x = np.zeros((32, 32, 3), np.uint8)
    with forked_rng(0):
        y = np.asarray(cutout(Image.fromarray(x), 0.25))
    grey = np.all(y == np.array(CUTOUT_FILL, np.uint8), axis=2)
    rows, cols = np.nonzero(grey)
    assert grey.sum() > 0 and np.all(y[~grey] == 0)
    assert rows.max() - rows.min() <= 8 and cols.max() - cols.min() <= 8  # a side of 0.25 * 32 (PIL's box is inclusive)
    assert np.array_equal(np.asarray(cutout(Image.fromarray(x), 0.0)), x)
