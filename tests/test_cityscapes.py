"""Cityscapes loader, its synthetic stand-in, and the joint image/label transforms."""
import os
import time

import numpy as np
import pytest
import torch

import densekd.data.cityscapes as cs
from densekd.data.cityscapes import CLASSES, PALETTE, Cityscapes, SyntheticCityscapes, encode_labels, label_lut
from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegEvalTransform, SegTrainTransform
from densekd.registry import DATASETS

# official cityscapesScripts ids of the 19 evaluated classes, in train-id order
OFFICIAL_TRAIN_LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


# ---------------------------------------------------------------------------------------------- label table
def test_label_table_maps_official_ids_to_train_ids():
    lut = label_lut()
    for train_id, label_id in enumerate(OFFICIAL_TRAIN_LABEL_IDS):
        assert lut[label_id] == train_id
    others = [i for i in range(256) if i not in OFFICIAL_TRAIN_LABEL_IDS]
    assert (lut[others] == 255).all()
    assert len(cs.LABEL_TABLE) == 35  # 34 ids + license plate
    ids = np.array([[-1, 0, 7], [33, 34, 9]])
    assert encode_labels(ids).tolist() == [[255, 255, 0], [18, 255, 255]]
    assert encode_labels(ids, ignore_index=250).tolist() == [[250, 250, 0], [18, 250, 250]]


def test_classes_and_palette():
    assert len(CLASSES) == 19 and CLASSES[0] == "road" and CLASSES[-1] == "bicycle"
    assert len(PALETTE) == 19 and PALETTE[0] == (128, 64, 128) and PALETTE[10] == (70, 130, 180)
    assert Cityscapes.synthetic == "SyntheticCityscapes"
    assert SyntheticCityscapes.CLASSES == Cityscapes.CLASSES
    # the metadata tasks take (class names in reports, colours in pictures), on both datasets
    for ds in (Cityscapes, SyntheticCityscapes, SyntheticCityscapes(split="val", num_samples=1)):
        assert ds.class_names == list(CLASSES) and ds.palette == list(PALETTE)


def test_synthetic_module_imports_in_either_order():
    """The generator lives in densekd.data.synthetic_cityscapes; the loader module re-exports it lazily."""
    import subprocess
    import sys

    from densekd.data import synthetic_cityscapes

    assert SyntheticCityscapes is synthetic_cityscapes.SyntheticCityscapes
    assert DATASETS.get("SyntheticCityscapes") is SyntheticCityscapes
    for first, second in (("synthetic_cityscapes", "cityscapes"), ("cityscapes", "synthetic_cityscapes")):
        code = (f"import densekd.data.{first}; from densekd.data.{second} import SyntheticCityscapes as S; "
                f"from densekd.data.synthetic_cityscapes import SyntheticCityscapes as T; assert S is T")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert proc.returncode == 0, proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        cs.Nope


# ---------------------------------------------------------------------------------------------- synthetic
def test_synthetic_is_deterministic_per_split_and_index_not_global_rng():
    ds = SyntheticCityscapes(split="train", augment=False)
    np.random.seed(0)
    torch.manual_seed(0)
    img_a, lab_a = ds.render(3)
    np.random.seed(123)
    np.random.rand(7)
    torch.manual_seed(5)
    img_b, lab_b = ds.render(3)
    assert np.array_equal(img_a, img_b) and np.array_equal(lab_a, lab_b)
    img_c, _ = ds.render(4)
    img_v, _ = SyntheticCityscapes(split="val", augment=False).render(3)
    assert not np.array_equal(img_a, img_c)
    assert not np.array_equal(img_a, img_v)
    # a fresh instance draws the same scene
    assert np.array_equal(SyntheticCityscapes(split="train", num_samples=10).render(3)[0], img_a)


def test_synthetic_label_noise_relabels_whole_objects_as_lookalikes():
    from densekd.data.synthetic_cityscapes import _LOOKALIKES, _draw_scene, _sample_seed

    clean = SyntheticCityscapes(split="train", num_samples=60, augment=False)
    noisy = SyntheticCityscapes(split="train", num_samples=60, augment=False, label_noise=0.3)
    objects = flipped = 0
    for i in range(60):
        img_c, lab_c = clean.render(i)
        img_n, lab_n = noisy.render(i)
        assert np.array_equal(img_c, img_n)  # the image is untouched, only the annotation changes
        _, _, inst = _draw_scene(np.random.default_rng(_sample_seed("train", i)), 64, 128)
        changed = lab_c != lab_n
        for c_old, c_new in set(zip(lab_c[changed].tolist(), lab_n[changed].tolist())):
            assert c_new in _LOOKALIKES[c_old]
        for iid in np.unique(inst):
            m = inst == iid
            cls = int(lab_c[m][0])
            if cls not in _LOOKALIKES:
                assert not changed[m].any()
                continue
            objects += 1
            flipped += int(changed[m].any())
            assert changed[m].all() or not changed[m].any()  # whole objects, never parts
    assert objects > 500 and abs(flipped / objects - 0.3) < 0.05
    # deterministic per (split, index), independent of the global RNG
    np.random.seed(1)
    first = noisy.render(5)[1]
    np.random.seed(2)
    assert np.array_equal(first, noisy.render(5)[1])
    with pytest.raises(ValueError, match="label_noise"):
        SyntheticCityscapes(label_noise=0.5)


def test_synthetic_sizes_and_sample_format():
    assert len(SyntheticCityscapes(split="train")) == 200
    assert len(SyntheticCityscapes(split="val")) == 50
    assert len(SyntheticCityscapes(split="val", num_samples=7)) == 7
    ev = SyntheticCityscapes(split="val", num_samples=4)
    s = ev[0]
    assert s["image"].shape == (3, 64, 128) and s["image"].dtype == torch.float32
    assert s["target"].shape == (64, 128) and s["target"].dtype == torch.int64
    values = set(torch.unique(s["target"]).tolist())
    assert values <= set(range(19)) | {255}
    # train: the Cityscapes crop (512 x 1024) is clamped to the synthetic frame
    tr = SyntheticCityscapes(split="train", num_samples=4, crop_size=(512, 1024))
    assert tr.augment and tr[1]["image"].shape == (3, 64, 128)
    tr = SyntheticCityscapes(split="train", num_samples=4, crop_size=(32, 48))
    assert tr[1]["image"].shape == (3, 32, 48) and tr[1]["target"].shape == (32, 48)
    with pytest.raises(IndexError):
        ev.render(4)


def test_synthetic_covers_all_classes_and_ignore():
    ds = SyntheticCityscapes(split="train", augment=False)
    counts = np.zeros(256, dtype=np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.render(i)[1].ravel(), minlength=256)
    assert (counts[:19] > 0).all(), [CLASSES[i] for i in np.flatnonzero(counts[:19] == 0)]
    assert counts[255] > 0
    assert counts[19:255].sum() == 0
    # thin / small classes really are small
    frac = counts / counts.sum()
    assert frac[5] < 0.02 and frac[18] < 0.01 and frac[10] > 0.1


def test_synthetic_classes_need_more_than_colour():
    """Rider and person share their appearance; only context (the two-wheeler below) separates them."""
    ds = SyntheticCityscapes(split="train", augment=False)
    means = {11: [], 12: [], 0: []}
    for i in range(120):
        img, lab = ds.render(i)
        for c in means:
            if (lab == c).sum() > 5:
                means[c].append(img[lab == c].mean(0))
    person, rider, road = (np.mean(means[c], 0) for c in (11, 12, 0))
    assert np.abs(person - rider).max() < 20
    assert np.abs(person - road).max() > 40


def test_synthetic_is_fast():
    ds = SyntheticCityscapes(split="val", augment=False)
    ds.render(0)
    times = []
    for i in range(30):
        t = time.perf_counter()
        ds.render(i)
        times.append(time.perf_counter() - t)
    assert np.median(times) < 0.01  # ~1.5 ms on an idle core; slack for loaded CI machines


def test_synthetic_retyping_from_cityscapes_config():
    cfg = dict(type="Cityscapes", root="/nonexistent", split="val", crop_size=(512, 1024), scale_range=(0.5, 2.0))
    cfg["type"] = Cityscapes.synthetic
    ds = DATASETS.build(cfg)
    assert isinstance(ds, SyntheticCityscapes) and not ds.augment and len(ds) == 50


# ---------------------------------------------------------------------------------------------- real loader
@pytest.fixture
def tree(tmp_path):
    SyntheticCityscapes.write_tree(tmp_path, "train", n=4)
    SyntheticCityscapes.write_tree(tmp_path, "val", n=3)
    return tmp_path


def test_cityscapes_reads_official_layout(tree):
    ds = Cityscapes(tree, split="val")
    assert len(ds) == 3 and not ds.augment
    assert os.path.basename(ds.images[0]).endswith("_leftImg8bit.png")
    synth = SyntheticCityscapes(split="val", num_samples=3)
    for i in range(3):
        # sorted by city then name: map back through the file name's sequence number
        seq = int(os.path.basename(ds.images[i]).split("_")[1])
        img, lab = ds.load(i)
        ref_img, ref_lab = synth.render(seq)
        assert np.array_equal(img, ref_img)
        assert np.array_equal(lab, ref_lab)  # void ids written to disk come back as 255
    # the raw label file really holds official ids (not train ids)
    import cv2
    raw = cv2.imread(ds.labels[0], cv2.IMREAD_UNCHANGED)
    assert raw.max() > 18 and 255 not in np.unique(raw)
    s = ds[0]
    assert s["image"].shape == (3, 64, 128) and s["target"].dtype == torch.int64


def test_cityscapes_train_augments(tree):
    ds = Cityscapes(tree, split="train", crop_size=(32, 48))
    assert ds.augment and len(ds) == 4
    s = ds[2]
    assert s["image"].shape == (3, 32, 48) and s["target"].shape == (32, 48)


def test_cityscapes_missing_root_split_label(tree, tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit"):
        Cityscapes(tmp_path / "nope", split="train")
    with pytest.raises(FileNotFoundError, match="test"):
        Cityscapes(tree, split="test")
    ds = Cityscapes(tree, split="train")
    victim = ds.labels[1]
    os.remove(victim)
    with pytest.raises(FileNotFoundError) as err:
        Cityscapes(tree, split="train")
    assert victim in str(err.value) and "gtFine_labelIds" in str(err.value)


# ---------------------------------------------------------------------------------------------- transforms
def _blocky(h=40, w=60, seed=0):
    """Image whose colour encodes its label: 8x10 blocks, label = block class, colour = 10 * label."""
    rng = np.random.default_rng(seed)
    lab = rng.integers(0, 19, size=(h // 8 + 1, w // 10 + 1)).repeat(8, 0).repeat(10, 1)[:h, :w]
    img = np.repeat((lab * 10 + 20)[:, :, None], 3, axis=2).astype(np.uint8)
    return img, lab.astype(np.uint8)


def _decode(img_t):
    mean = np.array(IMAGENET_MEAN)[:, None, None]
    std = np.array(IMAGENET_STD)[:, None, None]
    return np.rint((img_t.numpy() * std + mean) * 255).astype(np.int64)[0]


def test_train_transform_reseeds_from_global_numpy_rng():
    img, lab = _blocky()
    t = SegTrainTransform(crop_size=(32, 32), scale_range=(0.5, 2.0), flip=True, photometric=True)
    outs = []
    for seed in (7, 7, 8):
        np.random.seed(seed)
        outs.append(t(img, lab))
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert not torch.equal(outs[0]["image"], outs[2]["image"])


def test_train_transform_keeps_image_label_and_extras_aligned():
    img, lab = _blocky()
    depth = lab.astype(np.float32) * 1.5 + 0.25
    t = SegTrainTransform(crop_size=(48, 72), scale_range=(1.0, 1.0), flip=True, extra_fill={"depth": 0.0})
    for seed in range(6):
        np.random.seed(seed)
        out = t(img, lab, depth=depth)
        tgt = out["target"].numpy()
        assert out["image"].shape == (3, 48, 72) and tgt.shape == (48, 72) and out["depth"].shape == (48, 72)
        pad = tgt == 255
        assert pad.any()  # 40 x 60 image padded to 48 x 72
        colour = _decode(out["image"])
        assert np.array_equal(colour[~pad], tgt[~pad] * 10 + 20)
        assert np.allclose(out["depth"].numpy()[~pad], tgt[~pad] * 1.5 + 0.25)
        assert (out["depth"].numpy()[pad] == 0).all()
        assert (colour[pad] == 0).all()


def test_train_transform_scaling_uses_nearest_labels():
    img, lab = _blocky(80, 120, seed=1)
    t = SegTrainTransform(crop_size=(64, 64), scale_range=(0.5, 2.0), flip=True)
    for seed in range(4):
        np.random.seed(seed)
        out = t(img, lab)
        tgt = out["target"].numpy()
        valid = tgt != 255
        assert set(np.unique(tgt[valid])) <= set(range(19))  # no blended label ids
        colour = _decode(out["image"])
        agree = (colour[valid] == tgt[valid] * 10 + 20).mean()
        assert agree > 0.8  # bilinear image vs nearest label differ only at block edges


def test_eval_transform_normalises_only():
    img, lab = _blocky(30, 50)
    out = SegEvalTransform()(img, lab, depth=lab.astype(np.float32))
    expected = (img.astype(np.float64) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(out["image"].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    assert np.array_equal(out["target"].numpy(), lab)
    assert np.array_equal(out["depth"].numpy(), lab.astype(np.float32))


def test_transform_bad_input():
    t = SegTrainTransform(crop_size=(16, 16))
    img, lab = _blocky()
    with pytest.raises(ValueError, match="uint8"):
        t(img.astype(np.float32), lab)
    with pytest.raises(ValueError, match="shape"):
        t(img, lab[:-1])
    with pytest.raises(ValueError, match="scale_range"):
        SegTrainTransform(scale_range=(2.0, 1.0))
