import numpy as np
import pytest
import torch

from densekd.data.cifar import CIFAR100, CIFAR100_MEAN, CIFAR100_STD, SyntheticCIFAR100, write_cifar100_pickles


def test_reads_official_pickle_format(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {s: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for s, n in (("train", 6), ("test", 4))}
    labels = {"train": [0, 5, 99, 3, 3, 7], "test": [1, 2, 3, 4]}
    write_cifar100_pickles(tmp_path, imgs, labels)
    ds = CIFAR100(str(tmp_path), split="test")
    assert len(ds) == 4 and ds.targets == labels["test"] and ds.classes[0] == "class_0"
    sample = ds[2]
    expected = (torch.from_numpy(imgs["test"][2]).permute(2, 0, 1).float() / 255
                - torch.tensor(CIFAR100_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR100_STD).view(3, 1, 1)
    assert sample["target"] == 3 and torch.allclose(sample["image"], expected, atol=1e-6)
    # root may also be the cifar-100-python folder itself
    assert len(CIFAR100(str(tmp_path / "cifar-100-python"), split="train")) == 6


def test_train_augmentation_is_crop_and_flip_of_the_padded_image(tmp_path):
    img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    write_cifar100_pickles(tmp_path, {"train": img[None]}, {"train": [1]})
    ds = CIFAR100(str(tmp_path), split="train")
    np.random.seed(0)
    x = ds[0]["image"]
    np.random.seed(0)
    assert torch.equal(x, ds[0]["image"])
    pix = (x * torch.tensor(CIFAR100_STD).view(3, 1, 1) + torch.tensor(CIFAR100_MEAN).view(3, 1, 1)) * 255
    pix = pix.round().to(torch.uint8).permute(1, 2, 0).numpy()
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    found = any(np.array_equal(pix, c) or np.array_equal(pix, c[:, ::-1])
                for t in range(9) for l in range(9) for c in [padded[t:t + 32, l:l + 32]])
    assert found


def test_missing_files_name_expected_layout(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        CIFAR100(str(tmp_path), split="train")
    msg = str(err.value)
    assert "cifar-100-python" in msg and "train" in msg and "--synthetic" in msg
    with pytest.raises(ValueError, match="split"):
        SyntheticCIFAR100(split="val")


def test_synthetic_is_deterministic_and_class_structured():
    a, b = SyntheticCIFAR100(split="train", augment=False), SyntheticCIFAR100(split="train", augment=False)
    assert torch.equal(a[3]["image"], b[3]["image"]) and len(a) == 2000
    assert set(a.targets) <= set(range(100))
    # a nearest-class-mean classifier on raw pixels beats chance by far: the classes are learnable
    n = 600
    x = torch.stack([a[i]["image"].flatten() for i in range(n)])
    y = torch.tensor(a.targets[:n])
    means = torch.stack([x[y == c].mean(0) if (y == c).any() else torch.full_like(x[0], 1e6) for c in range(100)])
    test = SyntheticCIFAR100(split="test", augment=False)
    xt = torch.stack([test[i]["image"].flatten() for i in range(200)])
    acc = (torch.cdist(xt, means).argmin(1) == torch.tensor(test.targets[:200])).float().mean()
    assert acc > 0.5
