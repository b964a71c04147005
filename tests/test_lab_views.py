"""CIE Lab conversion against scikit-image, the L / ab normalisation, and one geometry for every view."""
import numpy as np
import pytest
import torch

from densekd.data.views import (LAB_MEAN, LAB_STD, ImageViews, denormalize_lab, lab_to_rgb, normalize_lab,
                                random_resized_box, rgb_to_lab, views_to_rgb)

skimage_color = pytest.importorskip("skimage.color")


def _colours():
    """Every corner and edge sample of the RGB cube (0, 15, ..., 255), greys, and random colours."""
    levels = np.r_[0:256:15, 1, 254, 255].astype(np.uint8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    greys = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, 1)
    rand = np.random.default_rng(0).integers(0, 256, (5000, 3), dtype=np.uint8)
    return np.concatenate([grid, greys, rand])


def test_rgb_to_lab_matches_skimage_on_many_colours():
    rgb = _colours()
    ours = rgb_to_lab(rgb)
    ref = skimage_color.rgb2lab(rgb[None])[0]
    assert ours.shape == rgb.shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)
    # image-shaped input, float input in [0, 1]
    img = rgb[:400].reshape(20, 20, 3)
    np.testing.assert_allclose(rgb_to_lab(img), skimage_color.rgb2lab(img), atol=1e-3, rtol=0)
    np.testing.assert_allclose(rgb_to_lab(img / 255.0), rgb_to_lab(img), atol=1e-12)


def test_extremes_black_white_and_the_gamut_corners():
    np.testing.assert_allclose(rgb_to_lab(np.array([0, 0, 0], np.uint8)), [0, 0, 0], atol=1e-9)
    # white: a, b within 0.005 of 0 (the published matrix's rows do not sum exactly to the D65 white; skimage too)
    np.testing.assert_allclose(rgb_to_lab(np.array([255, 255, 255], np.uint8)), [100, 0, 0], atol=5e-3)
    # the statistics are the sRGB gamut's mid-points and half-ranges: its extreme colours normalise to +-1
    corners = np.array([[0, 255, 0], [255, 0, 255], [0, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]],
                       np.uint8)
    L, ab = normalize_lab(rgb_to_lab(corners)[None])
    a, b = ab[0, 0].numpy(), ab[1, 0].numpy()
    np.testing.assert_allclose(L[0, 0, [4, 5]].numpy(), [-1, 1], atol=1e-4)
    np.testing.assert_allclose([a[0], a[1], b[2], b[3]], [-1, 1, -1, 1], atol=1e-4)
    assert LAB_MEAN == (50.0, 6.025, -6.6895) and LAB_STD == (50.0, 92.208, 101.1675)


def test_lab_to_rgb_inverts_and_matches_skimage():
    rgb = _colours()
    lab = rgb_to_lab(rgb)
    np.testing.assert_allclose(lab_to_rgb(lab) * 255.0, rgb, atol=1e-6)
    np.testing.assert_allclose(lab_to_rgb(lab), skimage_color.lab2rgb(lab[None])[0], atol=1e-4)
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(np.zeros((4, 4), np.uint8))


def test_normalised_views_are_the_published_affine_maps():
    img = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    lab = skimage_color.rgb2lab(img)
    L, ab = normalize_lab(rgb_to_lab(img))
    assert L.shape == (1, 5, 7) and ab.shape == (2, 5, 7) and L.dtype == ab.dtype == torch.float32
    np.testing.assert_allclose(L[0].numpy(), (lab[..., 0] - 50.0) / 50.0, atol=1e-4)
    np.testing.assert_allclose(ab[0].numpy(), (lab[..., 1] - 6.025) / 92.208, atol=1e-4)
    np.testing.assert_allclose(ab[1].numpy(), (lab[..., 2] + 6.6895) / 101.1675, atol=1e-4)
    np.testing.assert_allclose(denormalize_lab(L, ab), lab, atol=1e-3)


def _picture(h=40, w=56):
    """A non-symmetric picture: every pixel different (gradients in both directions and colour)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx * 7 + yy * 13) % 256], -1).astype(np.uint8)


def _unnormalise(image, mean, std):
    x = image * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return np.rint(x.permute(1, 2, 0).numpy() * 255).astype(np.int64)


@pytest.mark.parametrize("crop", ["resized", "pad"])
def test_every_view_of_a_sample_has_the_same_geometry(crop):
    """The L and ab views map back to exactly the cropped, flipped RGB view, whether the views are made in one
    call or in separate ones with the same seed -- and the augmentation does move and flip the picture."""
    img = _picture()
    kw = dict(size=24, augment=True, crop=crop, crop_scale=(0.2, 1.0), padding=4, mean=(0.4, 0.5, 0.6),
              std=(0.2, 0.3, 0.25))
    both, rgb_only, lab_only = (ImageViews(keys, **kw) for keys in
                                (("image", "L", "ab"), ("image",), ("ab", "L")))
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        s = both(img)
        assert list(s) == ["image", "L", "ab"]
        assert s["image"].shape == (3, 24, 24) and s["L"].shape == (1, 24, 24) and s["ab"].shape == (2, 24, 24)
        rgb = _unnormalise(s["image"], kw["mean"], kw["std"])
        back = views_to_rgb(s["L"], s["ab"]).astype(np.int64)
        assert np.abs(back - rgb).max() <= 1
        np.random.seed(seed)
        alone = rgb_only(img)["image"]
        np.random.seed(seed)
        lab = lab_only(img)
        assert list(lab) == ["ab", "L"]
        torch.testing.assert_close(alone, s["image"])
        torch.testing.assert_close(lab["L"], s["L"])
        torch.testing.assert_close(lab["ab"], s["ab"])
        np.random.seed(seed)
        geo = both.geometry(img)
        np.testing.assert_array_equal(geo.astype(np.int64), rgb)
        seen.add(geo.tobytes())
    assert len(seen) > 8


def test_pad_crop_is_a_window_of_the_padded_image_or_its_mirror():
    img = _picture(32, 32)
    t = ImageViews(("image",), size=None, augment=True, crop="pad", padding=4)
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[a:a + 32, b:b + 32] for a in range(9) for b in range(9)]
    flips = 0
    for seed in range(10):
        np.random.seed(seed)
        out = t.geometry(img)
        plain = any(np.array_equal(out, w) for w in windows)
        mirrored = any(np.array_equal(out, w[:, ::-1]) for w in windows)
        assert plain or mirrored
        flips += mirrored and not plain
    assert 0 < flips < 10


def test_random_resized_box_respects_scale_and_ratio():
    np.random.seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_box(96, 96, (0.3, 1.0), (3 / 4, 4 / 3))
        assert 0 <= top and top + h <= 96 and 0 <= left and left + w <= 96
        assert 0.3 * 96 * 96 * 0.9 <= h * w <= 96 * 96
        assert 3 / 4 * 0.9 <= w / h <= 4 / 3 * 1.1
    # impossible constraints fall back to the largest centre crop
    assert random_resized_box(10, 100, (0.99, 1.0), (1.0, 1.0)) == (0, 45, 10, 10)


def test_without_augmentation_the_image_is_only_resized():
    img = _picture(96, 96)
    same = ImageViews(("image",), size=None, mean=(0, 0, 0), std=(1, 1, 1))(img)["image"]
    np.testing.assert_array_equal(np.rint(same.permute(1, 2, 0).numpy() * 255).astype(np.uint8), img)
    small = ImageViews(("L",), size=32)(img)["L"]
    assert small.shape == (1, 32, 32)
    # area interpolation: a 3x3 block of the original averages into one pixel
    grey = np.repeat(np.arange(96 * 96, dtype=np.int64).reshape(96, 96)[..., None] % 251, 3, 2).astype(np.uint8)
    g = ImageViews(("image",), size=32, mean=(0, 0, 0), std=(1, 1, 1)).geometry(grey)
    assert abs(int(g[5, 7, 0]) - grey[15:18, 21:24, 0].mean()) <= 1


def test_view_arguments_are_checked():
    for kw, msg in ((dict(keys=("rgb",)), "keys"), (dict(keys=()), "keys"), (dict(keys=("L", "L")), "keys"),
                    (dict(crop="center"), "crop"), (dict(size=0), "size"), (dict(crop_scale=(0.5, 0.2)), "crop_scale"),
                    (dict(padding=-1), "padding"), (dict(std=(1, 0, 1)), "std")):
        with pytest.raises(ValueError, match=msg):
            ImageViews(**kw)
    with pytest.raises(ValueError, match="uint8"):
        ImageViews()(np.zeros((4, 4, 3), np.float32))
    assert ImageViews("L").keys == ("L",)
