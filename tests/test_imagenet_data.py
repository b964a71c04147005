"""ImageNet: the folder tree written by SyntheticImageNet.write_tree read back (class folders and the flat official
val/ with Kaggle's CSV or the devkit), sorted-wnid classes, odd files (greyscale, CMYK, a PNG named .JPEG),
completeness errors, the cached file index, torchvision's geometry, the three decoders, loaders and the stand-in."""
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from densekd.data.imagenet import (EXPECTED_IMAGES, GROUND_TRUTH, SYNSET_MAPPING, SYNTHETIC_MARKER, VAL_SOLUTION,
                                   ImageNet, apply_pil, geometry, read_devkit_meta)
from densekd.data.sampling import build_loader, collate_samples, forked_rng
from densekd.data.synthetic_imagenet import SYNTHETIC_WNIDS, SyntheticImageNet
from densekd.registry import DATASETS


def write(tmp_path, name="tree", **kw):
    root = tmp_path / name
    return root, SyntheticImageNet.write_tree(root, **kw)


def rel(ds, i, root):
    return os.path.relpath(ds.files[i], root)


@pytest.fixture
def flat(tmp_path):
    return write(tmp_path, "flat", val_layout="flat")


@pytest.fixture
def folders(tmp_path):
    return write(tmp_path, "folders", val_layout="folders")


def test_train_and_folder_val_read_back_in_sorted_wnid_then_name_order(folders, tmp_path):
    root, made = folders
    cache = tmp_path / "cache"
    for split in ("train", "val"):
        ds = ImageNet(str(root), split, size=32, index_cache=cache)
        assert ds.wnids == made["wnids"] == sorted(made["wnids"]) and ds.num_classes == 5
        assert [rel(ds, i, root) for i in range(len(ds))] == [p for p, _ in made[split]]
        assert ds.targets.tolist() == [made["wnids"].index(w) for _, w in made[split]]
        assert ds.class_names[0].startswith("synthetic class")  # from LOC_synset_mapping.txt, first name
    train = ImageNet(str(root), "train", size=32, index_cache=cache)
    names = [os.path.basename(f) for f in train.files[:3]]
    assert names == [f"{made['wnids'][0]}_{n}.JPEG" for n in (1, 10, 2)]  # plain string order, as ImageFolder


@pytest.mark.parametrize("labels", ["csv", "devkit", "devkit_only", "explicit"])
def test_flat_val_is_labelled_by_the_kaggle_csv_or_the_devkit(flat, tmp_path, labels):
    root, made = flat
    kw = {}
    if labels in ("devkit", "devkit_only"):
        (root / VAL_SOLUTION).unlink()
    if labels == "devkit_only":  # no synset list either: classes are meta.mat's leaves (not its 2 inner synsets)
        (root / SYNSET_MAPPING).unlink()
    if labels == "explicit":  # the ground truth elsewhere, named with val_labels / devkit
        (root / VAL_SOLUTION).unlink()
        other = tmp_path / "elsewhere"
        (root / "ILSVRC2012_devkit_t12").rename(other)
        kw = dict(val_labels=str(other / "data" / GROUND_TRUTH), devkit=str(other))
    ds = ImageNet(str(root), "val", size=32, index_cache=False, **kw)
    assert ds.flat and ds.wnids == made["wnids"]
    assert [rel(ds, i, root) for i in range(len(ds))] == [p for p, _ in made["val"]]  # file-name order
    assert ds.targets.tolist() == [made["wnids"].index(w) for _, w in made["val"]]
    assert (VAL_SOLUTION if labels == "csv" else GROUND_TRUTH) in ds.layout


def test_the_devkit_ids_are_not_the_sorted_order_and_only_leaves_are_classes(flat):
    root, made = flat
    leaves = read_devkit_meta(root / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    assert [i for i, _, _ in leaves] == [1, 2, 3, 4, 5]
    assert sorted(w for _, w, _ in leaves) == made["wnids"] != [w for _, w, _ in leaves]


def test_images_decode_to_rgb_greyscale_cmyk_and_png_included(folders):
    root, made = folders
    ds = ImageNet(str(root), "train", size=32, index_cache=False)
    modes = [Image.open(f).format + "/" + Image.open(f).mode for f in ds.files]
    assert {"JPEG/L", "JPEG/CMYK", "PNG/RGB", "JPEG/RGB"} <= set(modes)
    for i in range(len(ds)):
        image, label = ds.load(i)
        want = made["pictures"][rel(ds, i, root)]
        assert image.shape == (48, 64, 3) and image.dtype == np.uint8 and label == ds.targets[i]
        blocks = lambda a: a.astype(float).reshape(6, 8, 8, 8, 3).mean((1, 3))  # noqa: E731 - JPEG smooths noise
        assert np.abs(blocks(image) - blocks(want)).mean() < 1.5 and np.abs(blocks(image) - blocks(want)).max() < 8
        if modes[i] == "JPEG/L":
            np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_missing_or_partial_trees_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageNet root not found.*image-net.org.*--synthetic"):
        ImageNet(str(tmp_path / "nowhere"))
    root, _ = write(tmp_path, mark=False, devkit=False, solution_csv=False)
    with pytest.raises(ValueError) as err:
        ImageNet(str(root), "train", index_cache=False)
    text = str(err.value)
    assert "\n" not in text and "found 5 of 1000 classes and 15 of 1,281,167 images" in text
    assert "allow_partial=True" in text
    assert len(ImageNet(str(root), "train", allow_partial=True, index_cache=False)) == 15
    with pytest.raises(FileNotFoundError, match=r"flat validation folder .* needs its labels: LOC_val_solution.csv"):
        ImageNet(str(root), "val", allow_partial=True, index_cache=False)
    with pytest.raises(ValueError, match="split must be one of"):
        ImageNet(str(root), "test")
    with pytest.raises(ValueError, match="decode must be one of"):
        ImageNet(str(root), decode="nvjpeg")


def test_partial_trees_name_the_missing_classes_and_files(tmp_path):
    root, made = write(tmp_path, mark=False)
    names = (root / SYNSET_MAPPING).read_text()
    (root / SYNSET_MAPPING).write_text(names + "n09999999 a class without a folder\n")
    with pytest.raises(ValueError, match=r"found 5 of 1000 classes .* classes without images: n09999999"):
        ImageNet(str(root), "train", index_cache=False)
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").unlink()
    with pytest.raises(ValueError, match=r"9 of 50,000 images.*1 labelled images are not in"):
        ImageNet(str(root), "val", index_cache=False)
    (root / "train" / "n00000042").mkdir()
    with pytest.raises(ValueError, match="class folders that are not classes: n00000042"):
        ImageNet(str(root), "train", index_cache=False)
    (root / "val" / "stray.JPEG").write_bytes((root / "val" / "ILSVRC2012_val_00000001.JPEG").read_bytes())
    with pytest.raises(ValueError, match=r"stray.JPEG has no label in .*LOC_val_solution.csv"):
        ImageNet(str(root), "val", index_cache=False)
    assert EXPECTED_IMAGES == {"train": 1_281_167, "val": 50_000}


def test_the_file_index_is_cached_and_follows_changes(folders, tmp_path, monkeypatch):
    root, made = folders
    cache = tmp_path / "index"
    first = ImageNet(str(root), "train", index_cache=cache)
    assert first.index_source == "walk" and len(list(cache.glob("imagenet-train-*.npz"))) == 1
    import densekd.data.imagenet as mod

    walked = []
    real = mod._image_names
    monkeypatch.setattr(mod, "_image_names", lambda folder: walked.append(folder) or real(folder))
    again = ImageNet(str(root), "train", index_cache=cache)
    assert again.index_source == "cache" and not walked and again.files == first.files
    np.testing.assert_array_equal(again.targets, first.targets)
    wnid = made["wnids"][1]
    extra = root / "train" / wnid / f"{wnid}_99.JPEG"
    extra.write_bytes((root / "train" / wnid / f"{wnid}_1.JPEG").read_bytes())
    os.utime(extra.parent, ns=(1, 10**18))  # a folder's time changes when a file is added (forced for coarse clocks)
    changed = ImageNet(str(root), "train", index_cache=cache)
    assert changed.index_source == "walk" and len(changed) == len(first) + 1 and str(extra) in changed.files
    assert ImageNet(str(root), "train", index_cache=False).index_source == "walk"
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(ImageNet(str(root), "train", index_cache=blocked / "sub")) == len(changed)
    assert any("file index not cached" in str(w.message) for w in caught)


def test_eval_geometry_is_torchvisions_resize_and_centre_crop(folders):
    import torchvision.transforms as T

    root, _ = folders
    ds = ImageNet(str(root), "val", size=32, index_cache=False)
    assert ds.resize == round(32 * 256 / 224) and not ds.augment
    for i in range(len(ds)):
        img = Image.fromarray(ds.load(i)[0])
        ours = apply_pil(img, geometry(*img.size, 32, False, ds.resize), 32)
        theirs = T.Compose([T.Resize(ds.resize), T.CenterCrop(32)])(img)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
        np.testing.assert_allclose(ds[i]["image"].numpy(), T.Compose(
            [T.Resize(ds.resize), T.CenterCrop(32), T.ToTensor(), T.Normalize(ds.mean, ds.std)])(img).numpy(),
            atol=1e-5)


def test_train_geometry_is_a_random_resized_crop_then_flip():
    import torchvision.transforms.functional as TF

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    seen = set()
    for seed in range(40):
        np.random.seed(seed)
        g = geometry(80, 60, 24, True, 27)
        top, left, ch, cw, rh, rw, ot, ol, flip = g
        assert (rh, rw, ot, ol) == (24, 24, 0, 0) and 0 < ch <= 60 and 0 < cw <= 80
        assert 0.08 * 4800 * 0.9 <= ch * cw <= 4800 and top + ch <= 60 and left + cw <= 80
        theirs = TF.resized_crop(img, top, left, ch, cw, [24, 24], antialias=True)
        if flip:
            theirs = TF.hflip(theirs)
        ours = np.asarray(apply_pil(img, g, 24)).astype(int)
        np.testing.assert_array_equal(ours, np.asarray(theirs))
        seen.add(flip)
    assert seen == {0, 1}


def test_samples_have_the_crop_size_and_depend_only_on_the_seed(folders):
    root, _ = folders
    ds = ImageNet(str(root), "train", size=40, index_cache=False)
    with forked_rng(3):
        a = ds[4]
    with forked_rng(3):
        b = ds[4]
    with forked_rng(4):
        c = ds[4]
    assert set(a) == {"image", "target", "index"} and a["image"].shape == (3, 40, 40) and a["index"] == 4
    assert a["image"].dtype == torch.float32 and torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])
    v = ImageNet(str(root), "val", size=40, index_cache=False)
    assert v[0]["image"].shape == (3, 40, 40) and torch.equal(v[0]["image"], v[0]["image"])


@pytest.mark.parametrize("split", ["train", "val"])
def test_the_three_decoders_give_the_same_crops(folders, split):
    root, _ = folders
    kinds = {d: ImageNet(str(root), split, size=32, decode=d, index_cache=False)
             for d in ("pil", "torchvision", "device")}
    for i in range(len(kinds["pil"])):
        out = {}
        for d, ds in kinds.items():
            with forked_rng(100 + i):
                out[d] = ds[i]
        raw = out["device"]
        assert set(raw) == {"jpeg", "geometry", "target", "index"} and raw["jpeg"].dtype == torch.uint8
        odd = Image.open(kinds["pil"].files[i]).mode == "CMYK" or Image.open(kinds["pil"].files[i]).format == "PNG"
        assert raw["jpeg"].dim() == (3 if odd else 1)  # CMYK / PNG travel decoded, JPEGs as their bytes
        batch = collate_samples(kinds["device"], [raw])  # collate, then the device step (here on the CPU)
        assert set(batch) == {"image", "target", "index"} and batch["image"].shape == (1, 3, 32, 32)
        torch.testing.assert_close(batch["image"][0], out["torchvision"]["image"])  # same decoder, same code
        diff = ((batch["image"][0] - out["pil"]["image"]) * torch.tensor(kinds["pil"].std).view(3, 1, 1) * 255).abs()
        assert diff.max() < 1.01 and out["pil"]["target"] == raw["target"]  # rounding only


def test_device_batches_come_through_loader_workers(folders):
    root, _ = folders
    ds = ImageNet(str(root), "train", size=32, decode="device", index_cache=False)
    loader = build_loader(ds, 4, shuffle=True, seed=0, num_workers=2, persistent_workers=True, prefetch_factor=2)
    from densekd.data.sampling import device_step
    from densekd.engine.evaluate import to_device

    step = device_step(loader.dataset)
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        batches = [to_device(b, torch.device("cpu"), step=step) for b in loader]
        assert [b["image"].shape[0] for b in batches] == [4, 4, 4, 3]
        assert sorted(int(i) for b in batches for i in b["index"]) == list(range(len(ds)))
        assert all(torch.equal(b["target"], torch.as_tensor(ds.targets[b["index"]])) for b in batches)
    assert loader.persistent_workers and loader.prefetch_factor == 2


def test_the_stand_in_has_the_format_and_every_decoder(tmp_path):
    for decode in ("pil", "torchvision", "device"):
        ds = SyntheticImageNet(split="train", size=32, num_samples=12, num_classes=3, decode=decode)
        batch = collate_samples(ds, [ds[i] for i in range(4)])
        assert batch["image"].shape == (4, 3, 32, 32) and batch["target"].tolist() == ds.targets[:4].tolist()
    ds = SyntheticImageNet(split="val", num_samples=6)
    assert ds.wnids == list(SYNTHETIC_WNIDS) and len(ds.class_names) == 1000 and not ds.augment
    assert ds.load(0)[0].shape == (96, 96, 3) and ds[0]["image"].shape == (3, 224, 224)
    assert DATASETS.get("ImageNet").synthetic == "SyntheticImageNet"
    from densekd.config import Config
    from densekd.engine.builder import use_synthetic

    cfg = Config({"data": {"train": {"type": "CRDSampleDataset", "nce_k": 4, "dataset": {
        "type": "ImageNet", "root": "data/imagenet", "split": "train", "allow_partial": True}}}})
    use_synthetic(cfg)
    inner = cfg["data"]["train"]["dataset"]
    assert inner["type"] == "SyntheticImageNet" and "root" not in inner
    crd = DATASETS.build(dict(cfg["data"]["train"], dataset=dict(inner, num_samples=8, num_classes=2, size=16)))
    assert crd[0]["contrast_idx"].shape == (5,) and crd[0]["image"].shape == (3, 16, 16)


def test_the_marker_makes_a_synthetic_tree_partial(flat):
    root, _ = flat
    assert (root / SYNTHETIC_MARKER).is_file()
    assert ImageNet(str(root), "train", index_cache=False).partial
