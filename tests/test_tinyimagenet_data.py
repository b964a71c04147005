"""TinyImageNet: the official folder tree (written here by the test with Pillow), greyscale JPEGs, errors, the
synthetic stand-in and its tree, the 32 x 32 CIFAR-normalised probe config, and check_data on a corrupt file."""
import inspect

import numpy as np
import pytest
import torch
from PIL import Image

from densekd.config import load_config
from densekd.data.check import check_config
from densekd.data.cifar import CIFAR100_MEAN, CIFAR100_STD
from densekd.data.synthetic_tinyimagenet import SYNTHETIC_WNIDS, SyntheticTinyImageNet
from densekd.data.tinyimagenet import URL, TinyImageNet
from densekd.engine.builder import set_data_root, use_synthetic
from densekd.registry import DATASETS
from tests.conftest import ROOT

WNIDS = ["n01443537", "n01629819", "n01641577"]
PER_CLASS = [12, 2, 3]  # 12: names _0.._11, so _10 and _11 must sort after _2


def _blocky(rng, grey=False):
    """64 x 64 pictures of constant 8 x 8 blocks: JPEG at quality 100 without chroma subsampling keeps them
    within one grey level."""
    blocks = rng.integers(0, 256, (8, 8, 1 if grey else 3), dtype=np.uint8)
    return np.repeat(np.repeat(blocks, 8, 0), 8, 1)


def _save(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    if img.shape[2] == 1:
        Image.fromarray(img[..., 0], "L").save(path, format="JPEG", quality=100)
    else:
        Image.fromarray(img, "RGB").save(path, format="JPEG", quality=100, subsampling=0)


@pytest.fixture
def tree(tmp_path):
    """(root, train [(image, class)] in loader order, val [(image, class)]) of a tree written by the test."""
    rng = np.random.default_rng(0)
    top = tmp_path / "tiny-imagenet-200"
    top.mkdir()
    (top / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (top / "words.txt").write_text("n00000001\tentity\n" + "".join(
        f"{w}\t{name}\n" for w, name in zip(WNIDS, ["goldfish, Carassius auratus", "European fire salamander",
                                                     "bullfrog, Rana catesbeiana"])))
    train = []
    for k, (wnid, n) in enumerate(zip(WNIDS, PER_CLASS)):
        for i in range(n):
            img = _blocky(rng, grey=(k == 1 and i == 0))
            _save(top / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", img)
            train.append((img, k))
        (top / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    val, lines = [], []
    for i, k in enumerate([2, 0, 1, 2]):
        img = _blocky(rng, grey=(i == 3))
        _save(top / "val" / "images" / f"val_{i}.JPEG", img)
        lines.append(f"val_{i}.JPEG\t{WNIDS[k]}\t{i}\t2\t60\t61\n")
        val.append((img, k))
    (top / "val" / "val_annotations.txt").write_text("".join(lines))
    return tmp_path, train, val


def _decoded(path):
    return np.asarray(Image.open(path).convert("RGB"))


def test_train_and_val_read_back_in_class_and_file_order(tree):
    root, train, val = tree
    ds = TinyImageNet(str(root), split="train")
    assert ds.wnids == WNIDS and ds.num_classes == 3 and len(ds) == sum(PER_CLASS)
    assert ds.class_names == ["goldfish", "European fire salamander", "bullfrog"]
    assert ds.targets == [k for _, k in train]
    names = [p.rsplit("/", 1)[-1] for p in ds.files[:12]]
    assert names == [f"n01443537_{i}.JPEG" for i in range(12)]  # _10 after _9, not after _1
    for i, (img, k) in enumerate(train):
        image, label = ds.load(i)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and label == k
        np.testing.assert_array_equal(image, _decoded(ds.files[i]))
        assert np.abs(image.astype(int) - img.astype(int)).max() <= 1  # broadcasts a grey picture to RGB
    v = TinyImageNet(str(root / "tiny-imagenet-200"), split="val")  # root may be the folder itself
    assert v.targets == [k for _, k in val] and not v.augment and ds.augment
    for i, (img, k) in enumerate(val):
        assert np.abs(v.load(i)[0].astype(int) - img.astype(int)).max() <= 1


def test_greyscale_jpegs_come_back_as_three_equal_channels(tree):
    root, train, _ = tree
    ds = TinyImageNet(str(root), split="train")
    i = PER_CLASS[0]  # the first image of class 1 was written as a greyscale JPEG
    assert Image.open(ds.files[i]).mode == "L"
    image = ds.load(i)[0]
    assert image.shape == (64, 64, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 0], image[..., 2])
    np.testing.assert_array_equal(image[..., 0], np.asarray(Image.open(ds.files[i])))


def test_samples_and_views(tree):
    root, _, _ = tree
    ds = TinyImageNet(str(root), split="val", keys=("image", "ab"), size=32, mean=CIFAR100_MEAN, std=CIFAR100_STD)
    s = ds[1]
    assert set(s) == {"image", "ab", "target", "index"} and s["target"] == 0 and s["index"] == 1
    assert s["image"].shape == (3, 32, 32) and s["ab"].shape == (2, 32, 32)
    # no augmentation: the 64 x 64 picture of 8 x 8 blocks shrinks to 4 x 4 blocks, CIFAR-normalised
    x = s["image"] * torch.tensor(CIFAR100_STD).view(3, 1, 1) + torch.tensor(CIFAR100_MEAN).view(3, 1, 1)
    pix = np.ascontiguousarray(ds.load(1)[0][::8, ::8])
    assert (x[:, ::4, ::4].permute(1, 2, 0) * 255 - torch.from_numpy(pix).float()).abs().max() <= 2


def test_errors_name_the_missing_piece(tree, tmp_path):
    root, _, _ = tree
    top = root / "tiny-imagenet-200"
    with pytest.raises(FileNotFoundError) as err:
        TinyImageNet(str(tmp_path / "nowhere"))
    assert "wnids.txt" in str(err.value) and URL in str(err.value) and "--synthetic" in str(err.value)
    with pytest.raises(ValueError, match="split"):
        TinyImageNet(str(root), split="test")
    ann = top / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good + "val_9.JPEG\tn01443537\t0\t0\t63\t63\n")
    with pytest.raises(FileNotFoundError, match=r"val_9.JPEG listed in .*val_annotations.txt not found"):
        TinyImageNet(str(root), split="val")
    ann.write_text(good + "val_0.JPEG\tn99999999\t0\t0\t63\t63\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:5: wnid 'n99999999'"):
        TinyImageNet(str(root), split="val")
    ann.write_text(good + "val_0.JPEG n01443537 0 0 63 63\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:5: expected 6 tab-separated fields"):
        TinyImageNet(str(root), split="val")
    ann.unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        TinyImageNet(str(root), split="val")
    (top / "wnids.txt").write_text("\n".join(WNIDS + ["n02000000"]) + "\n")
    with pytest.raises(FileNotFoundError, match=r"class 3 \(n02000000\) not found"):
        TinyImageNet(str(root), split="train")
    (top / "train" / "n02000000" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no .JPEG images"):
        TinyImageNet(str(root), split="train")
    (top / "wnids.txt").write_text("\n".join(WNIDS + [WNIDS[0]]) + "\n")
    with pytest.raises(ValueError, match="repeated"):
        TinyImageNet(str(root), split="train")


def test_check_data_lists_a_corrupt_jpeg(tree):
    root, _, _ = tree
    ds = TinyImageNet(str(root), split="train")
    with open(ds.files[4], "r+b") as fh:
        fh.truncate(30)
    cfg = {"data": {"train": dict(type="TinyImageNet", root=str(root), split="train")}}
    bad, counts = check_config(cfg, splits=("train",), log=lambda _m: None)
    assert counts == {"train": len(ds)} and [b.index for b in bad] == [4]
    assert ds.files[4] in bad[0].message


# ---------------------------------------------------------------------------------------------- synthetic
def test_registration_and_the_stand_in_takes_every_real_argument():
    assert TinyImageNet.synthetic == "SyntheticTinyImageNet"
    assert DATASETS.get("TinyImageNet") is TinyImageNet and DATASETS.get("SyntheticTinyImageNet") is SyntheticTinyImageNet
    real, fake = inspect.signature(TinyImageNet).parameters, inspect.signature(SyntheticTinyImageNet).parameters
    for name, p in real.items():
        assert name in fake and (name == "root" or fake[name].default == p.default), name
    assert {"num_samples", "seed"} <= set(fake)


def test_synthetic_classes_determinism_and_greyscale():
    a = SyntheticTinyImageNet(split="train", augment=False)
    assert len(a) == 2000 and a.num_classes == 200 and len(a.class_names) == 200
    assert a.targets == sorted(a.targets) and all(a.targets.count(c) == 10 for c in range(200))
    np.testing.assert_array_equal(a.load(17)[0], SyntheticTinyImageNet(split="train").load(17)[0])
    grey = [i for i in range(300) if np.ptp(a.load(i)[0].astype(int), axis=2).max() == 0]
    assert 1 <= len(grey) <= 20
    v = SyntheticTinyImageNet(split="val", num_samples=400)
    assert sorted(set(v.targets)) == list(range(200)) and v[0]["image"].shape == (3, 64, 64)


def test_synthetic_tree_reads_back_through_the_real_loader(tmp_path):
    SyntheticTinyImageNet.write_tree(tmp_path, num_samples={"train": 400, "val": 30})
    real = TinyImageNet(str(tmp_path), split="train", augment=False)
    fake = SyntheticTinyImageNet(split="train", num_samples=400, augment=False)
    assert real.wnids == list(SYNTHETIC_WNIDS) and real.class_names == fake.class_names
    assert real.targets == fake.targets
    errors = [np.abs(real.load(i)[0].astype(int) - fake.load(i)[0]).mean() for i in range(0, 400, 9)]
    assert max(errors) < 10  # the same pictures up to JPEG compression
    val = TinyImageNet(str(tmp_path), split="val")
    assert val.targets == SyntheticTinyImageNet(split="val", num_samples=30).targets


def test_probe_config_is_32_pixels_with_cifar_statistics(tmp_path):
    cfg = load_config(ROOT / "configs/_base_/datasets/tinyimagenet.py")
    for split in ("train", "val"):
        d = cfg["data"][split]
        assert d["size"] == 32 and tuple(d["mean"]) == CIFAR100_MEAN and tuple(d["std"]) == CIFAR100_STD
    use_synthetic(cfg)
    s = DATASETS.build(dict(cfg["data"]["train"], num_samples=4))[0]
    assert s["image"].shape == (3, 32, 32) and 0 <= s["target"] < 200
    real = load_config(ROOT / "configs/_base_/datasets/tinyimagenet.py")
    set_data_root(real, str(tmp_path))
    assert real["data"]["train"]["root"] == str(tmp_path) == real["data"]["val"]["root"]
