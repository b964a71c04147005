"""STL-10: the official binary format (written here by the test, independently of the loader's writer), errors,
memory maps across workers, the CRD wrapper on the unlabelled split, the synthetic stand-in, and the configs
through the real Trainer."""
import inspect
import math
import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from densekd.config import load_config
from densekd.data.crd import CRDSampleDataset
from densekd.data.stl10 import IMAGE_BYTES, STL10, STL10_CLASSES, URL, write_stl10_binary
from densekd.data.synthetic_stl10 import SyntheticSTL10
from densekd.data.views import rgb_to_lab
from densekd.engine.builder import use_synthetic
from densekd.engine.schema import validate
from densekd.engine.trainer import Trainer
from densekd.registry import DATASETS
from tests.conftest import ROOT, write_config

COUNTS = {"train": 7, "test": 4, "unlabeled": 5}
FOLDS = [[0, 3, 5], [1, 2], [6], [0, 1, 2, 3], [4], [5, 6], [2], [3, 4], [0], [1, 6]]


def _x_bytes(images):
    """The official encoding, spelled out: for each image, channel after channel, each channel column by column
    (MATLAB's column-major order: ``tobytes(order='F')`` of the 96 x 96 plane)."""
    return b"".join(img[:, :, c].tobytes(order="F") for img in images for c in range(3))


@pytest.fixture
def tree(tmp_path):
    """An stl10_binary folder written byte by byte by the test: (root, images per part, labels 0..9 per part)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images, labels = {}, {}
    for part, n in COUNTS.items():
        images[part] = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        (folder / f"{part}_X.bin").write_bytes(_x_bytes(images[part]))
        if part != "unlabeled":
            labels[part] = rng.integers(0, 10, n)
            labels[part][0] = 9  # written as 10
            (folder / f"{part}_y.bin").write_bytes(bytes(int(v) + 1 for v in labels[part]))
    (folder / "fold_indices.txt").write_text("".join(" ".join(map(str, f)) + " \n" for f in FOLDS))
    (folder / "class_names.txt").write_text("\n".join(f"name{k}" for k in range(10)) + "\n")
    return tmp_path, images, labels


def test_the_format_spelled_out_puts_pixel_row_y_column_x_at_c_9216_plus_x_96_plus_y(tree):
    root, images, _ = tree
    raw = (root / "stl10_binary" / "train_X.bin").read_bytes()
    assert len(raw) == COUNTS["train"] * IMAGE_BYTES == COUNTS["train"] * 27648
    n, y, x, c = 3, 10, 70, 2
    assert raw[n * IMAGE_BYTES + c * 9216 + x * 96 + y] == images["train"][n, y, x, c]


def test_every_split_reads_back_value_by_value(tree):
    root, images, labels = tree
    for split in ("train", "test"):
        ds = STL10(str(root), split=split)
        assert len(ds) == COUNTS[split] and ds.targets == labels[split].tolist()
        for i in range(len(ds)):
            image, label = ds.load(i)
            assert image.shape == (96, 96, 3) and image.dtype == np.uint8
            np.testing.assert_array_equal(image, images[split][i])
            assert label == labels[split][i]
    un = STL10(str(root / "stl10_binary"), split="unlabeled")  # root may be the folder itself
    assert len(un) == 5 and un.targets is None and un.labels.tolist() == [-1] * 5
    for i in range(5):
        np.testing.assert_array_equal(un.load(i)[0], images["unlabeled"][i])
        assert un.load(i)[1] == -1
    both = STL10(str(root), split="train+unlabeled")
    assert len(both) == 12 and both.targets is None
    assert both.labels.tolist() == labels["train"].tolist() + [-1] * 5
    np.testing.assert_array_equal(both.load(7)[0], images["unlabeled"][0])
    np.testing.assert_array_equal(both.load(-1)[0], images["unlabeled"][4])
    assert STL10(str(root)).class_names == [f"name{k}" for k in range(10)]


def test_folds_select_the_listed_training_images(tree):
    root, images, labels = tree
    for k in (0, 3, 9):
        ds = STL10(str(root), split="train", fold=k)
        assert len(ds) == len(FOLDS[k]) and ds.targets == [int(labels["train"][j]) for j in FOLDS[k]]
        for i, j in enumerate(FOLDS[k]):
            np.testing.assert_array_equal(ds.load(i)[0], images["train"][j])
    mixed = STL10(str(root), split="train+unlabeled", fold=2)
    assert len(mixed) == 1 + 5
    np.testing.assert_array_equal(mixed.load(0)[0], images["train"][6])


def test_samples_carry_views_target_and_index(tree):
    root, images, labels = tree
    ds = STL10(str(root), split="test", keys=("image", "L", "ab"), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    s = ds[2]
    assert set(s) == {"image", "L", "ab", "target", "index"} and s["index"] == 2 and s["target"] == labels["test"][2]
    want = (torch.from_numpy(images["test"][2]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(s["image"], want)
    lab = rgb_to_lab(images["test"][2])
    np.testing.assert_allclose(s["L"][0].numpy(), (lab[..., 0] - 50) / 50, atol=1e-5)
    np.testing.assert_allclose(s["ab"][1].numpy(), (lab[..., 2] + 6.6895) / 101.1675, atol=1e-5)
    un = STL10(str(root), split="unlabeled", keys=("L", "ab"), size=64, crop="resized", crop_scale=(0.3, 1))
    s = un[1]
    assert set(s) == {"L", "ab", "index"} and s["L"].shape == (1, 64, 64) and s["ab"].shape == (2, 64, 64)
    assert un.augment and not ds.augment  # augmentation on by default for every split but test
    assert next(iter(DataLoader(un, batch_size=5)))["ab"].shape == (5, 2, 64, 64)


def test_images_are_memory_mapped_per_process_and_never_pickled(tree):
    root, images, _ = tree
    ds = STL10(str(root), split="unlabeled")
    ds.load(0)
    assert isinstance(ds._map("unlabeled"), np.memmap)
    blob = pickle.dumps(ds)
    assert len(blob) < IMAGE_BYTES  # the images travel as a path, not as data
    copy = pickle.loads(blob)
    assert copy._maps == {}
    np.testing.assert_array_equal(copy.load(3)[0], images["unlabeled"][3])


def test_forked_workers_read_the_same_images(tree):
    root, images, _ = tree
    ds = STL10(str(root), split="train+unlabeled", keys=("image",), augment=False, mean=(0, 0, 0), std=(1, 1, 1))
    ds.load(0)  # the parent has mapped the files before forking
    loader = DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context="fork")
    got = torch.cat([b["image"] for b in loader])
    want = np.concatenate([images["train"], images["unlabeled"]])
    np.testing.assert_array_equal(np.rint(got.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8), want)


def test_errors_name_the_file_and_how_to_get_it(tree, tmp_path):
    root, images, _ = tree
    folder = root / "stl10_binary"
    with pytest.raises(FileNotFoundError) as err:
        STL10(str(tmp_path / "nowhere"), split="train")
    msg = str(err.value)
    assert "train_X.bin" in msg and URL in msg and "--synthetic" in msg and "\n" not in msg
    (folder / "test_y.bin").unlink()
    with pytest.raises(FileNotFoundError, match="test_y.bin"):
        STL10(str(root), split="test")
    # a truncated image file: not a whole number of 27648-byte images
    (folder / "unlabeled_X.bin").write_bytes(_x_bytes(images["unlabeled"])[:-100])
    with pytest.raises(ValueError, match=r"unlabeled_X.bin has 138140 bytes, not a whole .*27648-byte images"):
        STL10(str(root), split="unlabeled")
    # labels and images disagree in number
    (folder / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(ValueError, match=r"train_y.bin has 3 labels but its image file holds 7 images"):
        STL10(str(root), split="train")
    (folder / "train_y.bin").write_bytes(bytes([1, 2, 3, 11, 4, 5, 6]))
    with pytest.raises(ValueError, match=r"label 11 of image 3 is outside 1..10"):
        STL10(str(root), split="train")
    (folder / "train_y.bin").write_bytes(bytes([1] * 7))
    with pytest.raises(ValueError, match="split"):
        STL10(str(root), split="val")
    with pytest.raises(ValueError, match="fold"):
        STL10(str(root), split="test", fold=1)
    with pytest.raises(ValueError, match="0..9"):
        STL10(str(root), split="train", fold=10)
    (folder / "fold_indices.txt").write_text("0 1\n" * 9 + "0 99\n")
    with pytest.raises(ValueError, match=r"fold_indices.txt:10: .*0..6"):
        STL10(str(root), split="train", fold=0)
    (folder / "fold_indices.txt").write_text("0 1\n" * 3)
    with pytest.raises(ValueError, match="3 non-empty lines; expected 10"):
        STL10(str(root), split="train", fold=0)
    (folder / "fold_indices.txt").unlink()
    with pytest.raises(FileNotFoundError, match="fold_indices.txt"):
        STL10(str(root), split="train", fold=0)
    assert len(STL10(str(root), split="train")) == 7  # no fold, no fold file needed


def test_crd_wrapper_on_the_unlabelled_split(tree):
    root, _, _ = tree
    crd = CRDSampleDataset(dict(type="STL10", root=str(root), split="unlabeled", keys=("L", "ab")), nce_k=3,
                           mode="exact", sampling="any")
    assert len(crd) == 5 and crd.class_names == [f"name{k}" for k in range(10)]
    np.random.seed(0)
    s = crd[2]
    assert set(s) == {"L", "ab", "index", "contrast_idx"} and s["index"] == 2
    idx = s["contrast_idx"].tolist()
    assert idx[0] == 2 and len(idx) == 4 and 2 not in idx[1:] and len(set(idx[1:])) == 3
    batch = next(iter(DataLoader(crd, batch_size=5)))
    assert batch["contrast_idx"].shape == (5, 4) and batch["L"].shape == (5, 1, 96, 96)
    with pytest.raises(ValueError, match="targets"):
        CRDSampleDataset(dict(type="STL10", root=str(root), split="unlabeled"), nce_k=3, sampling="class")
    with_labels = CRDSampleDataset(dict(type="STL10", root=str(root), split="train"), nce_k=2, sampling="class")
    assert with_labels[0]["target"] == with_labels.targets[0]


# ---------------------------------------------------------------------------------------------- synthetic
def test_registration_and_the_stand_in_takes_every_real_argument():
    assert STL10.synthetic == "SyntheticSTL10"
    assert DATASETS.get("STL10") is STL10 and DATASETS.get("SyntheticSTL10") is SyntheticSTL10
    real, fake = inspect.signature(STL10).parameters, inspect.signature(SyntheticSTL10).parameters
    for name, p in real.items():
        assert name in fake and (name == "root" or fake[name].default == p.default), name
    assert {"num_samples", "seed"} <= set(fake)
    assert SyntheticSTL10.class_names == list(STL10_CLASSES) and SyntheticSTL10.num_classes == 10


def test_synthetic_splits_folds_and_determinism():
    a = SyntheticSTL10(split="train", augment=False, num_samples=40)
    b = SyntheticSTL10(split="train", augment=False, num_samples=40)
    assert len(a) == 40 and sorted(set(a.targets)) == list(range(10)) and a.targets.count(3) == 4
    np.testing.assert_array_equal(a.load(5)[0], b.load(5)[0])
    assert not np.array_equal(a.load(5)[0], a.load(6)[0])
    assert SyntheticSTL10(split="train", seed=1, num_samples=40).targets != a.targets
    fold = SyntheticSTL10(split="train", fold=4, num_samples=40)
    assert len(fold) == 8 and fold.targets == [a.targets[j] for j in a.folds[4]]
    un = SyntheticSTL10(split="unlabeled", num_samples={"unlabeled": 12})
    assert len(un) == 12 and un.targets is None and "target" not in un[0]
    mixed = SyntheticSTL10(split="train+unlabeled", num_samples={"train": 10, "unlabeled": 6})
    assert len(mixed) == 16 and mixed.labels[10:].tolist() == [-1] * 6
    with pytest.raises(ValueError, match="num_samples"):
        SyntheticSTL10(num_samples={"val": 3})


def test_synthetic_tree_reads_back_through_the_real_loader(tmp_path):
    SyntheticSTL10.write_tree(tmp_path, num_samples={"train": 20, "test": 6, "unlabeled": 9})
    sizes = {"train": 20, "test": 6, "unlabeled": 9}
    folder = tmp_path / "stl10_binary"
    assert (folder / "train_X.bin").stat().st_size == 20 * 27648
    assert (folder / "class_names.txt").read_text().split() == list(STL10_CLASSES)
    for split, fold in (("train", None), ("train", 7), ("test", None), ("unlabeled", None), ("train+unlabeled", 1)):
        real = STL10(str(tmp_path), split=split, fold=fold)
        fake = SyntheticSTL10(split=split, fold=fold, num_samples=sizes)
        assert len(real) == len(fake) and real.targets == fake.targets
        for i in range(len(real)):
            ri, rl = real.load(i)
            fi, fl = fake.load(i)
            np.testing.assert_array_equal(ri, fi)
            assert rl == fl
    # the writer is the official format too: the test's own decoding of the bytes
    raw = np.frombuffer((folder / "test_X.bin").read_bytes(), np.uint8).reshape(6, 3, 96, 96)
    np.testing.assert_array_equal(raw[4, 1].T, SyntheticSTL10(split="test", num_samples=sizes).load(4)[0][:, :, 1])
    with pytest.raises(ValueError, match="0..9"):
        write_stl10_binary(tmp_path / "bad", {"train": np.zeros((2, 96, 96, 3), np.uint8)}, {"train": [0, 10]})


def _hue_histogram(ab: torch.Tensor) -> torch.Tensor:
    a, b = ab[0].flatten(), ab[1].flatten()
    r = torch.sqrt(a * a + b * b)
    h = torch.histc(torch.atan2(b, a)[r >= r.quantile(0.9)], 36, -math.pi, math.pi)
    return h / h.norm()


def _spectrum(L: torch.Tensor) -> torch.Tensor:
    f = torch.fft.fft2(L[0] - L[0].mean()).abs()[:16, :16].flatten()
    return f / f.norm()


@pytest.mark.parametrize("key, feature", [("L", _spectrum), ("ab", _hue_histogram)])
def test_the_class_shows_in_each_view_alone(key, feature):
    """Nearest class mean on a translation-invariant feature of ONE view beats chance (10 %) by far: the
    lightness view carries the class texture, the chromaticity view the class hue."""
    train = SyntheticSTL10(split="train", keys=(key,), augment=False, size=32, num_samples=150)
    test = SyntheticSTL10(split="test", keys=(key,), augment=False, size=32, num_samples=80)
    x = torch.stack([feature(train[i][key]) for i in range(len(train))])
    y = torch.tensor(train.targets)
    means = torch.stack([x[y == c].mean(0) for c in range(10)])
    xt = torch.stack([feature(test[i][key]) for i in range(len(test))])
    acc = (torch.cdist(xt, means).argmin(1) == torch.tensor(test.targets)).float().mean()
    assert acc > 0.5


# ---------------------------------------------------------------------------------------------- configs
def test_dataset_configs_and_use_synthetic():
    lab = load_config(ROOT / "configs/_base_/datasets/stl10_lab.py")
    train = lab["data"]["train"]
    assert train["type"] == "STL10" and train["split"] == "unlabeled" and tuple(train["keys"]) == ("L", "ab")
    assert lab["task"]["type"] == "representation" and lab["data"]["val"] is None
    use_synthetic(lab)
    assert lab["data"]["train"]["type"] == "SyntheticSTL10" and "root" not in lab["data"]["train"]
    s = DATASETS.build(dict(lab["data"]["train"], num_samples=4))[0]
    assert s["L"].shape == (1, 64, 64) and s["ab"].shape == (2, 64, 64) and "target" not in s
    rgb = load_config(ROOT / "configs/_base_/datasets/stl10.py")
    use_synthetic(rgb)
    s = DATASETS.build(dict(rgb["data"]["val"], num_samples=4))[1]
    assert s["image"].shape == (3, 32, 32) and 0 <= s["target"] < 10


@pytest.mark.parametrize("view, channels", [("L", 1), ("ab", 2)])
def test_classifiers_on_one_view_train_through_the_trainer(view, channels, tmp_path):
    cfg = load_config(ROOT / f"configs/stl10/wrn_16_2_{view}.py",
                      ["data.batch_size=4", "data.val_batch_size=4", "data.num_workers=0",
                       "data.train.num_samples=8", "data.val.num_samples=4"])
    use_synthetic(cfg)
    validate(cfg)
    assert cfg["student_input"] == view and cfg["model"]["in_channels"] == channels
    summary = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and math.isfinite(summary["final"]["top1"])
    weights = torch.load(tmp_path / "w/checkpoints/last.pth", map_location="cpu", weights_only=False)["model"]
    assert weights["conv1.weight"].shape[1] == channels


CROSS_MODAL = """
_base_ = ['{root}/configs/_base_/default_runtime.py', '{root}/configs/_base_/datasets/stl10_lab.py']
student_input = 'ab'
model = dict(type='wrn_16_2', num_classes=10, in_channels=2)
teacher = dict(model=dict(type='wrn_16_2', num_classes=10, in_channels=1), input='L', checkpoint='{ckpt}')
distill = [dict(type='CRD', student='feats[-1]', teacher='feats[-1]', feat_dim=16, nce_k=4, weight=1.0)]
data = dict(train=dict(_delete_=True, type='CRDSampleDataset', nce_k=4, mode='exact', sampling='any',
                       dataset=dict(type='STL10', root='data/stl10', split='unlabeled', keys=('L', 'ab'), size=64,
                                    crop='resized', crop_scale=(0.3, 1.0), num_samples=dict(unlabeled=8))),
            batch_size=4, num_workers=0)
optimizer = dict(type='SGD', lr=0.01, momentum=0.9)
lr_schedule = dict(type='cosine', by_epoch=False)
train = dict(epochs=1, log_interval=1)
"""


def test_crd_from_an_L_teacher_to_an_ab_student_on_the_unlabelled_images(tmp_path):
    """Each network reads its own view of the same crops: the teacher batch['L'], the student batch['ab']."""
    path = write_config(tmp_path / "l_to_ab.py", CROSS_MODAL.format(root=ROOT, ckpt=tmp_path / "none.pth"))
    cfg = load_config(path)
    use_synthetic(cfg)
    validate(cfg)
    assert cfg["data"]["train"]["dataset"]["type"] == "SyntheticSTL10"
    summary = Trainer(cfg, tmp_path / "w", device="cpu", synthetic=True, max_iters=2).train()
    assert summary["iters"] == 2 and summary["final"] == {}
    weights = torch.load(tmp_path / "w/checkpoints/last.pth", map_location="cpu", weights_only=False)["model"]
    assert weights["conv1.weight"].shape == (16, 2, 3, 3)


def test_the_L_classifier_trains_on_files_in_the_official_format_via_data_root(tmp_path):
    import json
    import subprocess
    import sys

    SyntheticSTL10.write_tree(tmp_path / "stl10", num_samples={"train": 8, "test": 4, "unlabeled": 2})
    wd = tmp_path / "w"
    out = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), str(ROOT / "configs/stl10/wrn_16_2_L.py"),
                          "--data-root", str(tmp_path / "stl10"), "--max-iters", "1", "--work-dir", str(wd),
                          "--device", "cpu", "--cfg-options", "data.batch_size=4", "data.val_batch_size=4",
                          "data.num_workers=0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((wd / "summary.json").read_text())
    assert summary["iters"] == 1 and not summary["synthetic"] and math.isfinite(summary["final"]["top1"])


def test_check_data_reads_every_image_and_reports_a_truncated_file(tree):
    from densekd.data.check import check_config

    root, images, _ = tree
    cfg = {"data": {"train": dict(type="STL10", root=str(root), split="train+unlabeled"),
                    "val": dict(type="STL10", root=str(root), split="test")}}
    bad, counts = check_config(cfg, log=lambda _m: None)
    assert bad == [] and counts == {"train": 12, "val": 4}
    (root / "stl10_binary" / "unlabeled_X.bin").write_bytes(_x_bytes(images["unlabeled"])[:-1])
    bad, counts = check_config(cfg, log=lambda _m: None)
    assert counts == {"val": 4} and len(bad) == 1 and bad[0].split == "train"
    assert "unlabeled_X.bin" in bad[0].message and "27648-byte images" in bad[0].message


def test_colour_cue_keeps_the_class_in_L_and_takes_it_out_of_the_hue():
    """colour_cue=0: objects in random hues; the pictures are otherwise those of colour_cue=1 (the default), the
    L texture still tells the class, the hue histogram no longer does."""
    default = SyntheticSTL10(split="train", num_samples=20)
    same = SyntheticSTL10(split="train", num_samples=20, colour_cue=1.0)
    assert all(np.array_equal(default.load(i)[0], same.load(i)[0]) for i in range(5))
    with pytest.raises(ValueError, match="colour_cue"):
        SyntheticSTL10(colour_cue=1.5)

    def nearest_mean(key, feature, cue):
        train = SyntheticSTL10(split="train", keys=(key,), augment=False, size=32, num_samples=150, colour_cue=cue)
        test = SyntheticSTL10(split="test", keys=(key,), augment=False, size=32, num_samples=80, colour_cue=cue)
        x = torch.stack([feature(train[i][key]) for i in range(len(train))])
        y = torch.tensor(train.targets)
        means = torch.stack([x[y == c].mean(0) for c in range(10)])
        xt = torch.stack([feature(test[i][key]) for i in range(len(test))])
        return float((torch.cdist(xt, means).argmin(1) == torch.tensor(test.targets)).float().mean())

    assert nearest_mean("L", _spectrum, 0.0) > 0.5
    assert nearest_mean("ab", _hue_histogram, 1.0) > 0.5 and nearest_mean("ab", _hue_histogram, 0.0) < 0.3
