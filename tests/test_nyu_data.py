"""NYU-Depth v2: real-format readers (labeled .mat via h5py, splits.mat, class mappings, raw-frame lists), the
joint transform, and the synthetic rooms."""
import inspect
import os
import pickle

import h5py
import numpy as np
import pytest
import scipy.io
import torch

import densekd.data.nyu as nyu
from densekd.data import synthetic_nyu as snyu
from densekd.data.nyu import (CLASSES13, CLASSES40, IMAGENET_MEAN, IMAGENET_STD, MAP40_TO_13, PALETTE40,
                              NYUDepthRaw, NYUDepthV2, NYUTransform)
from densekd.data.synthetic_nyu import (SYNTHETIC_MAP_CLASS, SyntheticNYUDepthRaw, SyntheticNYUDepthV2,
                                        write_labeled_mat, write_mapping_mat, write_raw_tree, write_splits_mat)
from densekd.registry import DATASETS

N, H, W = 7, 6, 8  # non-square frames: a swapped H / W shows up as a shape error


def _random_frames(rng, n=N, h=H, w=W, n_raw=894):
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depths = rng.uniform(0.3, 12.0, (n, h, w)).astype(np.float32)  # some beyond max_depth = 10
    labels = rng.integers(0, n_raw + 1, (n, h, w)).astype(np.uint16)
    labels[:, 0, 0] = 0  # unlabeled somewhere
    return images, depths, labels


def _mapping(rng, n_raw=894, n_classes=40):
    m = rng.integers(1, n_classes + 1, n_raw)
    m[[4, 100]] = 0  # raw ids 5 and 101 unmapped
    return m


@pytest.fixture
def labeled(tmp_path):
    """A small labeled set in the official formats: (root, images, depths, labels, map_class, train, test)."""
    rng = np.random.default_rng(0)
    images, depths, labels = _random_frames(rng)
    map_class = _mapping(rng)
    train, test = np.array([0, 2, 3, 6]), np.array([1, 4, 5])
    write_labeled_mat(str(tmp_path / "nyu_depth_v2_labeled.mat"), images, depths, labels)
    write_splits_mat(str(tmp_path / "splits.mat"), train, test)
    write_mapping_mat(str(tmp_path / "classMapping40.mat"), map_class, CLASSES40)
    return tmp_path, images, depths, labels, map_class, train, test


def _expected_label(raw, map_class, table=None):
    ids = np.concatenate([[0], map_class])[raw.astype(np.int64)]
    if table is not None:
        ids = np.concatenate([[0], table])[ids]
    return np.where(ids == 0, 255, ids - 1)


# ---------------------------------------------------------------------------------------------- metadata
def test_class_names_palette_and_registration():
    assert len(CLASSES40) == 40 and CLASSES40[:3] == ("wall", "floor", "cabinet")
    assert CLASSES40[21] == "ceiling" and CLASSES40[23] == "refridgerator" and CLASSES40[-1] == "otherprop"
    assert CLASSES40[29:32] == ("whiteboard", "person", "night stand")
    assert len(set(PALETTE40)) == 40 and (0, 0, 0) not in PALETTE40 and PALETTE40[0] == (128, 0, 0)
    assert len(MAP40_TO_13) == 40 and MAP40_TO_13[0] == 12 and MAP40_TO_13[1] == 5 and MAP40_TO_13[21] == 3
    assert sorted(set(MAP40_TO_13)) == list(range(1, 14)) and len(CLASSES13) == 13
    for cls in (NYUDepthV2, SyntheticNYUDepthV2):
        assert cls.class_names == list(CLASSES40) and cls.palette == list(PALETTE40) and cls.num_classes == 40
    assert NYUDepthV2.synthetic == "SyntheticNYUDepthV2" and NYUDepthRaw.synthetic == "SyntheticNYUDepthRaw"
    for name in ("NYUDepthV2", "NYUDepthRaw", "SyntheticNYUDepthV2", "SyntheticNYUDepthRaw"):
        assert DATASETS.get(name).__name__ == name
    assert nyu.SyntheticNYUDepthV2 is SyntheticNYUDepthV2  # lazy re-export
    with pytest.raises(AttributeError):
        nyu.Nope


def test_synthetic_stand_ins_take_every_real_argument():
    for real, fake in ((NYUDepthV2, SyntheticNYUDepthV2), (NYUDepthRaw, SyntheticNYUDepthRaw)):
        rp = inspect.signature(real).parameters
        fp = inspect.signature(fake).parameters
        for name, p in rp.items():
            assert name in fp, f"{fake.__name__} lacks {name}"
            if name != "root":
                assert fp[name].default == p.default, name
        assert {"num_samples", "size"} <= set(fp)


def test_use_synthetic_retypes_nyu_configs_and_builds_them():
    from densekd.config import load_config
    from densekd.engine.builder import use_synthetic

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    expect = {"nyu_depth": ("NYUDepthV2", "depth"), "nyu_seg40": ("NYUDepthV2", "label"),
              "nyu_raw": ("NYUDepthRaw", "depth")}
    for name, (train_type, target) in expect.items():
        cfg = load_config(os.path.join(root, "configs/_base_/datasets", f"{name}.py"))
        assert cfg["data"]["train"]["type"] == train_type and cfg["data"]["val"]["split"] == "test"
        assert tuple(cfg["data"]["train"]["crop_size"]) == (416, 544)
        use_synthetic(cfg)
        assert "root" not in cfg["data"]["train"] and cfg["data"]["train"]["type"].startswith("Synthetic")
        train = DATASETS.build(dict(cfg["data"]["train"], num_samples=2))
        val = DATASETS.build(dict(cfg["data"]["val"], num_samples=1))
        s = train[0]
        assert s["image"].shape == (3, 96, 128) and s["target"].shape[-2:] == (96, 128)  # crop clamped
        assert torch.equal(s["target"], s[target])
        v = val[0]
        assert torch.equal(v["target"], v[target]) and v["target"].shape[-2:] == (96, 128)


# ---------------------------------------------------------------------------------------------- MATLAB files
def test_labeled_mat_has_matlab_axis_order_and_v73_header(labeled):
    root, images, depths, labels, *_ = labeled
    path = str(root / "nyu_depth_v2_labeled.mat")
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (N, 3, W, H) and f["images"].dtype == np.uint8
        assert f["depths"].shape == (N, W, H) and f["labels"].shape == (N, W, H)
        assert f["labels"].dtype == np.uint16
        # MATLAB column-major: element (n, c, x, y) is image n, channel c, column x, row y
        assert f["images"][3, 1, 5, 2] == images[3, 2, 5, 1]
        assert f["depths"][4, 7, 0] == depths[4, 0, 7]
    with pytest.raises(NotImplementedError):  # the header says v7.3, which scipy.io leaves to HDF5 readers
        scipy.io.loadmat(path)
    split = scipy.io.loadmat(str(root / "splits.mat"))
    assert split["trainNdxs"].shape == (4, 1) and split["trainNdxs"].ravel().tolist() == [1, 3, 4, 7]
    mapping = scipy.io.loadmat(str(root / "classMapping40.mat"))
    assert mapping["mapClass"].shape == (1, 894) and nyu.mat_strings(mapping["className"]) == list(CLASSES40)


def test_labeled_set_reads_back_value_by_value(labeled):
    root, images, depths, labels, map_class, train, test = labeled
    for split, frames in (("train", train), ("test", test)):
        ds = NYUDepthV2(str(root), split=split)
        assert len(ds) == len(frames) and ds.frames.tolist() == frames.tolist()  # 1-based -> 0-based
        for i, j in enumerate(frames):
            image, depth, label = ds.load(i)
            assert image.shape == (H, W, 3) and image.dtype == np.uint8
            np.testing.assert_array_equal(image, images[j])
            assert depth.shape == (H, W) and depth.dtype == np.float32
            np.testing.assert_array_equal(depth, depths[j])
            np.testing.assert_array_equal(label, _expected_label(labels[j], map_class))
        ds.close()
    lab = NYUDepthV2(str(root), split="train").load(0)[2]
    assert lab[0, 0] == 255 and lab.max() <= 255 and set(np.unique(lab)) <= set(range(40)) | {255}


def test_samples_keys_dtypes_and_depth_conventions(labeled):
    root, images, depths, labels, map_class, train, _ = labeled
    d = depths[train[1]].copy()
    ds = NYUDepthV2(str(root), split="train", augment=False)
    s = ds[1]
    assert set(s) == {"image", "depth", "label", "target", "index"} and s["index"] == 1
    assert s["image"].shape == (3, H, W) and s["image"].dtype == torch.float32
    want = (images[train[1]].astype(np.float32) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(s["image"].permute(1, 2, 0).numpy(), want, atol=1e-5)
    assert s["depth"].shape == (1, H, W) and s["depth"].dtype == torch.float32
    expect = np.where(d > 10.0, 0.0, d)  # beyond max_depth -> 0 (invalid), metres otherwise, never normalised
    np.testing.assert_array_equal(s["depth"][0].numpy(), expect)
    assert (d > 10).any() and (s["depth"] == 0).any()
    assert s["label"].dtype == torch.int64 and s["label"].shape == (H, W)
    assert torch.equal(s["target"], s["label"])
    np.testing.assert_array_equal(s["label"].numpy(), _expected_label(labels[train[1]], map_class))
    sd = NYUDepthV2(str(root), split="train", augment=False, target="depth", max_depth=None)[1]
    assert torch.equal(sd["target"], sd["depth"])
    np.testing.assert_array_equal(sd["depth"][0].numpy(), d)  # max_depth=None keeps every value
    assert NYUDepthV2(str(root), split="train").augment and not NYUDepthV2(str(root), split="test").augment
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["depth"].shape == (2, 1, H, W) and batch["index"].tolist() == [0, 1]


def test_missing_and_nonfinite_depth_read_as_zero(tmp_path):
    rng = np.random.default_rng(1)
    images, depths, labels = _random_frames(rng, n=2)
    depths[0, 1, 2] = np.nan
    depths[0, 2, 3] = 0.0
    depths[0, 3, 4] = -1.0
    write_labeled_mat(str(tmp_path / "nyu_depth_v2_labeled.mat"), images, depths, labels, raw_depths=depths * 0)
    write_splits_mat(str(tmp_path / "splits.mat"), np.array([0]), np.array([1]))
    write_mapping_mat(str(tmp_path / "classMapping40.mat"), _mapping(rng), CLASSES40)
    s = NYUDepthV2(str(tmp_path), augment=False, max_depth=None)[0]["depth"][0]
    assert s[1, 2] == 0 and s[2, 3] == 0 and s[3, 4] == 0 and s[0, 0] == depths[0, 0, 0]
    raw = NYUDepthV2(str(tmp_path), augment=False, depth_key="rawDepths")[0]["depth"]
    assert torch.all(raw == 0)


def test_raw_ids_without_mapping_and_names(tmp_path):
    rng = np.random.default_rng(2)
    images, depths, labels = _random_frames(rng, n=3)
    names = [f"thing{k}" for k in range(1, 895)]
    write_labeled_mat(str(tmp_path / "nyu_depth_v2_labeled.mat"), images, depths, labels, names=names)
    write_splits_mat(str(tmp_path / "splits.mat"), np.array([2, 0]), np.array([1]))
    ds = NYUDepthV2(str(tmp_path), mapping_file=None, augment=False)
    assert ds.class_names == names and ds.num_classes == 894 and ds.palette is None
    image, depth, label = ds.load(0)
    assert label.dtype == np.uint16
    np.testing.assert_array_equal(label, labels[2])
    np.testing.assert_array_equal(ds[1]["label"].numpy(), labels[0].astype(np.int64))


def test_thirteen_classes_three_ways(labeled, tmp_path):
    root, images, depths, labels, map_class, train, _ = labeled
    table = np.asarray(MAP40_TO_13)
    expect = _expected_label(labels[train[0]], map_class, table)
    # (a) 40-class mapping + the built-in 40 -> 13 table
    ds = NYUDepthV2(str(root), num_classes=13)
    assert ds.num_classes == 13 and ds.class_names == list(CLASSES13) and len(ds.palette) == 13
    np.testing.assert_array_equal(ds.load(0)[2], expect)
    # (b) ... + the table read from class13Mapping.mat (struct classMapping13: mapping, names)
    other = np.roll(table, 1)
    names = np.empty((1, 13), dtype=object)
    names[0, :] = [f"c{k}" for k in range(13)]
    scipy.io.savemat(str(root / "class13Mapping.mat"),
                     {"classMapping13": {"labelMapping": other.astype(float).reshape(1, 40), "className": names}})
    ds = NYUDepthV2(str(root), num_classes=13, mapping13_file="class13Mapping.mat")
    np.testing.assert_array_equal(ds.load(0)[2], _expected_label(labels[train[0]], map_class, other))
    assert ds.class_names == [f"c{k}" for k in range(13)]
    # (c) a direct 894 -> 13 mapping file (classMapping13.mat), with configurable keys, absolute path
    direct = np.random.default_rng(3).integers(0, 14, 894)
    path = write_mapping_mat(str(tmp_path / "elsewhere" / "m13.mat"), direct, CLASSES13, keys=("map13", "names13"))
    ds = NYUDepthV2(str(root), num_classes=13, mapping_file=path, mapping_keys=("map13", "names13"))
    np.testing.assert_array_equal(ds.load(0)[2], _expected_label(labels[train[0]], direct))


def test_v73_splits_file_is_read_with_h5py(labeled):
    root, *_ , train, test = labeled
    with h5py.File(str(root / "splits73.mat"), "w", userblock_size=512) as f:
        f["trainNdxs"] = (test + 1).astype(np.float64).reshape(1, -1)  # MATLAB n x 1, as h5py shows it
        f["testNdxs"] = (train + 1).astype(np.float64).reshape(1, -1)
    assert NYUDepthV2(str(root), splits_file="splits73.mat").frames.tolist() == test.tolist()


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_the_file_key_and_layout(labeled, tmp_path):
    root, images, depths, labels, map_class, train, test = labeled
    r = str(root)
    with pytest.raises(FileNotFoundError, match="nyu_depth_v2_labeled.mat.*Expected layout"):
        NYUDepthV2(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="--data-root"):
        NYUDepthV2(None)
    with pytest.raises(FileNotFoundError, match="split file not found.*nosplits.mat"):
        NYUDepthV2(r, splits_file="nosplits.mat")
    with pytest.raises(FileNotFoundError, match="class-mapping file not found.*nomap.mat"):
        NYUDepthV2(r, mapping_file="nomap.mat")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        NYUDepthV2(r, split="val")
    with pytest.raises(ValueError, match="target must be"):
        NYUDepthV2(r, target="normals")
    # wrong keys
    h5 = str(tmp_path / "nodepth.mat")
    with h5py.File(h5, "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    with pytest.raises(KeyError, match=r"nodepth.mat.*no dataset 'depths'.*Expected layout"):
        NYUDepthV2(r, mat_file=h5)
    # wrong shape: images stored N x H x W x 3 instead of MATLAB's layout
    bad = str(tmp_path / "badshape.mat")
    with h5py.File(bad, "w") as f:
        f["images"] = images
        f["depths"] = depths.transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    with pytest.raises(ValueError, match=r"badshape.mat.*'images' has shape \(7, 6, 8, 3\); expected \(N, 3, W, H\)"):
        NYUDepthV2(r, mat_file=bad)
    bad2 = str(tmp_path / "baddepth.mat")
    with h5py.File(bad2, "w") as f:
        f["images"] = images.transpose(0, 3, 2, 1)
        f["depths"] = depths  # N x H x W: not reversed
        f["labels"] = labels.transpose(0, 2, 1)
    with pytest.raises(ValueError, match=r"'depths' has shape \(7, 6, 8\); expected \(N, W, H\) = \(7, 8, 6\)"):
        NYUDepthV2(r, mat_file=bad2)
    (tmp_path / "text.mat").write_text("not a mat file")
    with pytest.raises(ValueError, match="not an HDF5 file.*v7.3"):
        NYUDepthV2(r, mat_file=str(tmp_path / "text.mat"))
    # splits: wrong key, 0-based, out of range
    scipy.io.savemat(str(tmp_path / "s1.mat"), {"trainIdx": np.ones((2, 1)), "testNdxs": np.ones((1, 1))})
    with pytest.raises(KeyError, match=r"s1.mat.*no variable 'trainNdxs'.*trainIdx"):
        NYUDepthV2(r, splits_file=str(tmp_path / "s1.mat"))
    scipy.io.savemat(str(tmp_path / "s2.mat"), {"trainNdxs": np.array([[0.0], [1.0]]), "testNdxs": np.ones((1, 1))})
    with pytest.raises(ValueError, match="1-based"):
        NYUDepthV2(r, splits_file=str(tmp_path / "s2.mat"))
    scipy.io.savemat(str(tmp_path / "s3.mat"), {"trainNdxs": np.array([[1.0], [99.0]]), "testNdxs": np.ones((1, 1))})
    with pytest.raises(ValueError, match=r"1\.\.7"):
        NYUDepthV2(r, splits_file=str(tmp_path / "s3.mat"))
    scipy.io.savemat(str(tmp_path / "s4.mat"), {"trainNdxs": np.ones((2, 2)), "testNdxs": np.ones((1, 1))})
    with pytest.raises(ValueError, match="vector"):
        NYUDepthV2(r, splits_file=str(tmp_path / "s4.mat"))
    # mapping: wrong key, wrong values
    scipy.io.savemat(str(tmp_path / "m1.mat"), {"classMap": np.ones((1, 894))})
    with pytest.raises(KeyError, match=r"m1.mat.*no variable 'mapClass'"):
        NYUDepthV2(r, mapping_file=str(tmp_path / "m1.mat"))
    scipy.io.savemat(str(tmp_path / "m2.mat"), {"mapClass": np.full((1, 894), 41.0)})
    with pytest.raises(ValueError, match="class ids up to 41 but num_classes=40"):
        NYUDepthV2(r, mapping_file=str(tmp_path / "m2.mat"))
    with pytest.raises(ValueError, match="num_classes must be 40"):
        NYUDepthV2(r, num_classes=20)
    # a label id the mapping does not cover is reported with its frame
    short = write_mapping_mat(str(tmp_path / "short.mat"), map_class[:10], CLASSES40)
    msg = r"label ids 0\.\.\d+ in frame 1 \(1-based\).*outside the class mapping \(raw ids 0\.\.10"
    with pytest.raises(ValueError, match=msg):
        NYUDepthV2(r, mapping_file=short).load(0)


def test_thirteen_class_request_with_a_bad_table(labeled, tmp_path):
    root = str(labeled[0])
    scipy.io.savemat(str(tmp_path / "t.mat"), {"classMapping13": {"m": np.full((1, 40), 20.0)}})
    with pytest.raises(ValueError, match="40 class ids in 0..13"):
        NYUDepthV2(root, num_classes=13, mapping13_file=str(tmp_path / "t.mat"))
    scipy.io.savemat(str(tmp_path / "u.mat"), {"other": np.ones(3)})
    with pytest.raises(KeyError, match="classMapping13"):
        NYUDepthV2(root, num_classes=13, mapping13_file=str(tmp_path / "u.mat"))


# ---------------------------------------------------------------------------------------------- lazy h5py
def test_reads_are_per_frame_and_lazy(labeled, monkeypatch):
    root, images, depths, labels, map_class, train, _ = labeled
    reads = []
    original = h5py.Dataset.__getitem__

    def recording(self, args, *rest, **kw):
        reads.append((self.name, args))
        return original(self, args, *rest, **kw)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    ds = NYUDepthV2(str(root), split="train", augment=False)
    assert reads == []  # construction inspects shapes and dtypes only
    ds.load(2)
    ds[3]
    big = {"/images", "/depths", "/labels"}
    assert sorted(reads) == sorted([(k, int(train[2])) for k in big] + [(k, int(train[3])) for k in big])
    for _name, args in reads:
        assert isinstance(args, int)  # one frame, never a slice / () / the whole array


def test_one_handle_per_process(labeled):
    root, images, *_ = labeled
    ds = NYUDepthV2(str(root), split="train", augment=False)
    assert ds._handle is None  # nothing open until the first access
    first = ds._h5()
    assert ds._h5() is first and ds._handle_pid == os.getpid()
    ds._handle_pid = -12345  # as a forked DataLoader worker sees the parent's handle
    second = ds._h5()
    assert second is not first and ds._handle_pid == os.getpid() and bool(first.id.valid)
    np.testing.assert_array_equal(ds.load(0)[0], images[labeled[5][0]])
    clone = pickle.loads(pickle.dumps(ds))  # spawned workers get a copy without the handle
    assert clone._handle is None
    np.testing.assert_array_equal(clone.load(1)[0], images[labeled[5][1]])
    ds.close()
    assert ds._handle is None


def test_forked_dataloader_workers_read_the_same_frames(labeled):
    root, images, depths, labels, map_class, train, _ = labeled
    ds = NYUDepthV2(str(root), split="train", augment=False, target="depth", max_depth=None)
    ds.load(0)  # the parent holds an open handle when the workers fork
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context="fork")
    got = {int(b["index"]): b for b in loader}
    assert sorted(got) == list(range(len(train)))
    for i, j in enumerate(train):
        np.testing.assert_array_equal(got[i]["depth"][0, 0].numpy(), depths[j])


# ---------------------------------------------------------------------------------------------- transform
def _geometry_frame(h=24, w=32):
    """Image, depth and label as functions of the same block geometry: label = block id, depth = f(label)."""
    vv, uu = np.mgrid[0:h, 0:w]
    label = ((vv // 4) * 8 + (uu // 4)) % 40
    depth = (0.5 + 0.1 * label).astype(np.float32)
    image = np.stack([label * 6, 255 - label * 6, uu * 255 // (w - 1)], -1).astype(np.uint8)
    return image, depth, label.astype(np.uint8)


def _denorm(img):
    return (img.permute(1, 2, 0).numpy() * np.array(IMAGENET_STD) + np.array(IMAGENET_MEAN)) * 255


def test_augmentation_shares_geometry_and_divides_depth_by_scale():
    image, depth, label = _geometry_frame()
    t = NYUTransform(True, crop_size=(16, 20), scale_range=(1.0, 1.5), flip=True)
    flips, ratios = set(), []
    for seed in range(12):
        np.random.seed(seed)
        out = t(image, depth, label)
        lab, dep, img = out["label"].numpy(), out["depth"][0].numpy(), _denorm(out["image"])
        assert lab.shape == dep.shape == (16, 20) and out["depth"].shape == (1, 16, 20)
        assert 1.0 <= out["scale"] <= 1.5
        valid = lab != 255
        assert valid.all() and (dep > 0).all()  # scale >= 1 and crop < frame: no padding
        ratio = dep / (0.5 + 0.1 * lab)  # the same for every pixel: 1 / s
        np.testing.assert_allclose(ratio, 1.0 / out["scale"], rtol=1e-5)
        ratios.append(out["scale"])
        # the image shows the same block as the label (away from block edges, where bilinear blends)
        inner = np.ones_like(valid)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                inner &= np.roll(np.roll(lab, dy, 0), dx, 1) == lab
        inner[[0, -1]] = False
        inner[:, [0, -1]] = False
        assert inner.sum() > 50
        np.testing.assert_allclose(img[..., 0][inner], lab[inner] * 6, atol=2.5)
        flips.add(bool(img[:, 0, 2].mean() > img[:, -1, 2].mean()))  # blue grows with the column unless flipped
    assert flips == {True, False}  # both flipped and unflipped samples
    assert max(ratios) - min(ratios) > 0.1  # the scale varies
    # reproducible from the global numpy seed
    np.random.seed(3)
    a = t(image, depth, label)
    np.random.seed(3)
    b = t(image, depth, label)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["depth"], b["depth"])


def test_scaling_without_depth_division_and_padding_values():
    image, depth, label = _geometry_frame()
    keep = NYUTransform(True, crop_size=(16, 20), scale_range=(1.2, 1.5), scale_depth=False)
    np.random.seed(0)
    out = keep(image, depth, label)
    np.testing.assert_allclose(out["depth"][0].numpy(), 0.5 + 0.1 * out["label"].numpy(), rtol=1e-6)
    assert out["scale"] > 1.19
    pad = NYUTransform(True, crop_size=(40, 48), scale_range=None, flip=False)
    out = pad(image, depth, label)
    lab, dep = out["label"].numpy(), out["depth"][0].numpy()
    assert lab.shape == (40, 48)
    assert ((lab == 255) == (dep == 0)).all() and (lab == 255).sum() == 40 * 48 - 24 * 32
    img = out["image"].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(img[lab == 255], np.tile(-np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD),
                                                        ((lab == 255).sum(), 1)), atol=1e-5)
    # missing depth stays missing under nearest-neighbour scaling (no blending with neighbours)
    holes = depth.copy()
    holes[::3, ::2] = 0
    np.random.seed(1)
    out = NYUTransform(True, None, (1.3, 1.3), flip=False)(image, holes, label)
    d, lab = out["depth"][0].numpy(), out["label"].numpy()
    vals = d[d > 0] * 1.3
    np.testing.assert_allclose(vals, 0.5 + 0.1 * lab[d > 0], rtol=1e-5)
    with pytest.raises(ValueError, match="scale_range"):
        NYUTransform(True, None, (1.5, 1.0))
    with pytest.raises(ValueError, match="max_depth"):
        NYUTransform(False, max_depth=0)


# ---------------------------------------------------------------------------------------------- synthetic
def test_synthetic_format_and_determinism():
    ds = SyntheticNYUDepthV2(split="train", num_samples=6, augment=False)
    image, depth, label = ds.load(2)
    assert image.shape == (96, 128, 3) and image.dtype == np.uint8
    assert depth.shape == (96, 128) and depth.dtype == np.float32 and label.dtype == np.uint8
    assert 0.3 < depth.min() and depth.max() < 10.0 and (depth > 0).all()  # 'depths': complete, metres
    assert set(np.unique(label)) <= set(range(40)) | {255}
    state = np.random.get_state()
    np.random.seed(123)
    again = SyntheticNYUDepthV2(split="train", num_samples=6, size=(96, 128)).load(2)
    np.random.set_state(state)
    for a, b in zip((image, depth, label), again):
        np.testing.assert_array_equal(a, b)
    other = SyntheticNYUDepthV2(split="test", num_samples=6).load(2)
    assert not np.array_equal(other[1], depth)
    s = ds[0]
    assert set(s) == {"image", "depth", "label", "target", "index"} and torch.equal(s["target"], s["label"])
    assert s["depth"].shape == (1, 96, 128) and s["label"].dtype == torch.int64
    raw = SyntheticNYUDepthV2(split="train", num_samples=6, depth_key="rawDepths").load(2)[1]
    holes = raw == 0
    assert 0.005 < holes.mean() < 0.4 and np.array_equal(raw[~holes], depth[~holes])
    small = SyntheticNYUDepthV2(split="train", num_samples=2, size=(48, 64), crop_size=(416, 544))
    assert small.crop_size == (48, 64) and small[0]["image"].shape == (3, 48, 64)
    assert SyntheticNYUDepthV2(split="train", num_samples=2, num_classes=13).load(0)[2].max() in set(range(13)) | {255}
    assert SyntheticNYUDepthV2(split="train", num_samples=2, mapping_file=None).load(0)[2].dtype == np.uint16
    with pytest.raises(IndexError):
        ds.load(6)


def test_synthetic_rooms_statistics():
    """Plausible rooms over many samples: many classes, room planes everywhere, a few % ignore / missing."""
    counts, ignore, missing, objects = np.zeros(256), [], [], 0
    for i in range(24):
        r = snyu.render_room(np.random.default_rng(i), 48, 64)
        counts += np.bincount(r["label"].ravel(), minlength=256)
        ignore.append((r["label"] == 255).mean())
        missing.append((r["raw_depth"] == 0).mean())
        objects += (r["surface"] == 3).any()
        assert r["raw_label"][r["label"] == 255].max(initial=0) == 0
        lab = r["label"] != 255
        np.testing.assert_array_equal(SYNTHETIC_MAP_CLASS[r["raw_label"][lab].astype(int) - 1] - 1, r["label"][lab])
    present = (counts[:40] > 0).sum()
    assert present >= 20 and counts[1] > 0 and counts[21] > 0 and objects >= 20
    assert 0.002 < np.mean(ignore) < 0.1 and 0.01 < np.mean(missing) < 0.3


def test_synthetic_floor_depth_is_true_perspective():
    """Floor pixels back-projected with the pinhole model lie on one plane (the floor), to float precision."""
    checked = 0
    for seed in range(12):
        r = snyu.render_room(np.random.default_rng(seed), 96, 128)
        fx, fy, cx, cy = r["K"]
        vv, uu = np.nonzero(r["surface"] == 0)
        if len(vv) < 800:
            continue
        z = r["depth"][vv, uu].astype(np.float64)
        pts = np.stack([(uu - cx) / fx * z, (vv - cy) / fy * z, z], 1)
        sing = np.linalg.svd(pts - pts.mean(0), compute_uv=False) / np.sqrt(len(pts))
        assert sing[-1] < 1e-3  # RMS distance off the plane under a millimetre
        assert sing[1] > 0.2  # ... while the points spread over metres
        # depth is the camera-frame z, not the distance along the ray: read as a distance, the floor bends
        rays = pts / z[:, None]
        bent = rays / np.linalg.norm(rays, axis=1, keepdims=True) * z[:, None]
        assert np.linalg.svd(bent - bent.mean(0), compute_uv=False)[-1] / np.sqrt(len(pts)) > 1e-2
        checked += 1
    assert checked >= 3


def _pixel_features(image, colour=True, position=True):
    h, w = image.shape[:2]
    x = image.reshape(-1, 3).astype(np.float64) / 255
    lum = x.mean(1, keepdims=True)
    vv, uu = np.mgrid[0:h, 0:w]
    vv, uu = vv.reshape(-1, 1) / h, uu.reshape(-1, 1) / w
    g = image.mean(2) / 255.0
    lap = np.abs(4 * g - np.roll(g, 1, 0) - np.roll(g, -1, 0) - np.roll(g, 1, 1) - np.roll(g, -1, 1)).reshape(-1, 1)
    f = [np.ones_like(lum)]
    if colour:
        f += [x, x ** 2, lum ** 3, np.log(lum + 0.02), lap]
    if position:
        f += [vv, vv ** 2, vv ** 3, uu, uu ** 2]
    if colour and position:
        f += [vv * lum]
    return np.concatenate(f, 1)


def test_depth_is_predictable_from_rgb():
    train = SyntheticNYUDepthV2(split="train", num_samples=24, augment=False)
    test = SyntheticNYUDepthV2(split="test", num_samples=8, augment=False)
    tr = [train.load(i) for i in range(len(train))]
    te = [test.load(i) for i in range(len(test))]
    y, yt = np.concatenate([d.ravel() for _, d, _ in tr]), np.concatenate([d.ravel() for _, d, _ in te])
    r2 = {}
    for name, kw in {"colour": dict(position=False), "position": dict(colour=False), "both": {}}.items():
        X = np.concatenate([_pixel_features(im, **kw) for im, _, _ in tr])
        Xt = np.concatenate([_pixel_features(im, **kw) for im, _, _ in te])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        r2[name] = 1 - ((Xt @ coef - yt) ** 2).mean() / ((yt - y.mean()) ** 2).mean()
    assert r2["colour"] > 0.1, r2           # colour alone (shading, haze, texture) beats the mean
    assert r2["both"] > r2["position"] + 0.08, r2  # and adds to what the image position tells


def test_room_planes_are_separable_from_depth_geometry():
    """floor / ceiling / wall from depth + image row alone (camera-frame height, depth, depth gradients), 7-NN."""
    def samples(ds):
        X, Y = [], []
        for i in range(len(ds)):
            _, z, lab = ds.load(i)
            h, w = z.shape
            vv = np.mgrid[0:h, 0:w][0]
            height = -(vv - (h - 1) / 2) * z / (nyu.NYU_FOCAL * w / 640)
            F = np.stack([z, height, np.gradient(z, axis=0), np.gradient(z, axis=1)], -1).reshape(-1, 4)
            L = lab.ravel()
            m = np.isin(L, [0, 1, 21])
            X.append(F[m])
            Y.append(L[m])
        return np.concatenate(X), np.concatenate(Y)

    X, Y = samples(SyntheticNYUDepthV2(split="train", num_samples=16, augment=False))
    Xt, Yt = samples(SyntheticNYUDepthV2(split="test", num_samples=6, augment=False))
    rng = np.random.default_rng(0)
    mu, sd = X.mean(0), X.std(0)
    ia, ib = rng.choice(len(X), 4000, replace=False), rng.choice(len(Xt), 1500, replace=False)
    A, B = (X[ia] - mu) / sd, (Xt[ib] - mu) / sd
    d2 = (B ** 2).sum(1)[:, None] + (A ** 2).sum(1)[None] - 2 * B @ A.T
    votes = Y[ia][np.argsort(d2, 1)[:, :7]]
    pred = np.array([np.bincount(v, minlength=40).argmax() for v in votes])
    acc = (pred == Yt[ib]).mean()
    majority = max((Yt[ib] == c).mean() for c in (0, 1, 21))
    assert acc > 0.9 and acc > majority + 0.2, (acc, majority)
    for c in (0, 1, 21):
        assert (pred[Yt[ib] == c] == c).mean() > 0.75


def test_synthetic_labeled_tree_reads_back_through_the_real_loader(tmp_path):
    paths = SyntheticNYUDepthV2.write_tree(str(tmp_path), n_train=4, n_test=2, size=(48, 64))
    assert all(os.path.isfile(p) for p in paths.values())
    for split, n in (("train", 4), ("test", 2)):
        real = NYUDepthV2(str(tmp_path), split=split, augment=False)
        fake = SyntheticNYUDepthV2(split=split, num_samples=n, size=(48, 64), augment=False)
        assert len(real) == n
        for i in range(n):
            for a, b in zip(real.load(i), fake.load(i)):
                np.testing.assert_array_equal(a, b)
        r, f = real[n - 1], fake[n - 1]
        for key in ("image", "depth", "label", "target"):
            assert torch.equal(r[key], f[key]), key
        rr = NYUDepthV2(str(tmp_path), split=split, depth_key="rawDepths", mapping_file=None, augment=False)
        ff = SyntheticNYUDepthV2(split=split, num_samples=n, size=(48, 64), depth_key="rawDepths",
                                 mapping_file=None, augment=False)
        for a, b in zip(rr.load(0), ff.load(0)):
            np.testing.assert_array_equal(a, b)
        assert rr.class_names[0] == "wall#0" and len(rr.class_names) == 894


# ---------------------------------------------------------------------------------------------- raw frames
def test_raw_frames_read_back_value_by_value(tmp_path):
    lst = write_raw_tree(str(tmp_path), n=3, size=(48, 64), image_ext=".png")
    lines = open(lst).read().split("\n")
    assert lines[0].startswith("/") and lines[0].split()[1].endswith(".png") and len(lines[0].split()) == 3
    d = cv2_read(os.path.join(str(tmp_path), lines[0].split()[1].lstrip("/")))
    assert d.dtype == np.uint16 and d.ndim == 2 and (d == 0).any()  # millimetres, 0 = missing
    real = NYUDepthRaw(str(tmp_path), augment=False)
    fake = SyntheticNYUDepthRaw(num_samples=3, size=(48, 64), augment=False)
    assert len(real) == 3
    for i in range(3):
        (ri, rd), (fi, fd) = real.load(i), fake.load(i)
        np.testing.assert_array_equal(ri, fi)
        np.testing.assert_array_equal(rd, fd)
        np.testing.assert_array_equal(np.rint(rd * 1000).astype(np.uint16),
                                      cv2_read(real.depths[i]))  # mm -> m exactly
    s = real[1]
    assert set(s) == {"image", "depth", "target", "index", "focal"} and s["index"] == 1
    assert torch.equal(s["target"], s["depth"]) and s["depth"].shape == (1, 48, 64)
    assert s["focal"] == pytest.approx(nyu.NYU_FOCAL * 64 / 640, abs=1e-4)
    assert fake[1]["focal"] == pytest.approx(s["focal"], abs=1e-4)
    for key in ("image", "depth"):
        assert torch.equal(s[key], fake[1][key])
    # JPEG frames: the same depth, the image up to compression
    write_raw_tree(str(tmp_path / "jpg"), n=2, size=(48, 64), filelist="list.txt")
    jr = NYUDepthRaw(str(tmp_path / "jpg"), filelist="list.txt", augment=False)
    jf = SyntheticNYUDepthRaw(filelist="list.txt", num_samples=2, size=(48, 64))
    assert np.abs(jr.load(0)[0].astype(int) - jf.load(0)[0]).mean() < 6
    np.testing.assert_array_equal(jr.load(0)[1], jf.load(0)[1])
    # augmentation: focal follows the zoom only when depth is not divided
    np.random.seed(0)
    a = NYUDepthRaw(str(tmp_path), crop_size=(32, 40), scale_range=(1.4, 1.5), scale_depth=False)[0]
    assert a["depth"].shape == (1, 32, 40) and 1.4 * s["focal"] - 1e-3 <= a["focal"] <= 1.5 * s["focal"] + 1e-3
    assert NYUDepthRaw(str(tmp_path))[0]["focal"] == pytest.approx(s["focal"])


def cv2_read(path):
    import cv2

    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def test_raw_list_errors_name_file_and_line(tmp_path):
    import cv2

    write_raw_tree(str(tmp_path), n=2, size=(32, 48), image_ext=".png")
    lst = tmp_path / "nyu_train_files.txt"
    good = lst.read_text().splitlines()
    with pytest.raises(FileNotFoundError, match="file list not found.*nope.txt"):
        NYUDepthRaw(str(tmp_path), filelist="nope.txt")
    with pytest.raises(FileNotFoundError, match="--data-root"):
        NYUDepthRaw(None)

    def write(lines):
        lst.write_text("\n".join(lines) + "\n")

    write([good[0], " ".join(good[1].split()[:2])])
    with pytest.raises(ValueError, match=r"nyu_train_files.txt:2: expected 'rgb_path depth_path focal'"):
        NYUDepthRaw(str(tmp_path))
    write(["# comment", "", good[0], good[1].rsplit(" ", 1)[0] + " f518"])
    with pytest.raises(ValueError, match=r"nyu_train_files.txt:4: focal 'f518' is not a number"):
        NYUDepthRaw(str(tmp_path))
    rgb, dep, focal = good[1].split()
    write([good[0], f"{rgb} None {focal}"])
    with pytest.raises(ValueError, match=r":2: the depth entry is 'None'"):
        NYUDepthRaw(str(tmp_path))
    write([good[0], f"{rgb}.missing {dep} {focal}"])
    with pytest.raises(FileNotFoundError, match=r"nyu_train_files.txt:2: RGB image .*missing' not found"):
        NYUDepthRaw(str(tmp_path))
    write([good[0], f"{rgb} {dep}x {focal}"])
    with pytest.raises(FileNotFoundError, match=r":2: depth PNG .*pngx' not found"):
        NYUDepthRaw(str(tmp_path))
    # an 8-bit depth PNG (e.g. a visualisation) is refused, naming the file and the line
    eight = tmp_path / "eight.png"
    cv2.imwrite(str(eight), np.full((32, 48), 7, np.uint8))
    write([good[0], f"{rgb} /eight.png {focal}"])
    ds = NYUDepthRaw(str(tmp_path))
    with pytest.raises(ValueError, match=r"eight.png.*nyu_train_files.txt:2.*uint8.*expected a single-channel uint16"):
        ds.load(1)
    ds.load(0)  # the good line still reads
    write([""])
    with pytest.raises(ValueError, match="no entries"):
        NYUDepthRaw(str(tmp_path))
