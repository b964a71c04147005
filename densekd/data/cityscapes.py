"""Cityscapes semantic segmentation (19 train ids, ignore 255): the loader, label table, class names and palette.

Real data: Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016.
Expected layout (the official ``leftImg8bit_trainvaltest.zip`` + ``gtFine_trainvaltest.zip``)::

    ROOT/leftImg8bit/{train,val,test}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    ROOT/gtFine/{train,val,test}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

Label ids (0..33, and -1 for the license plate) are mapped to the 19 train ids of the official
cityscapesScripts label table; every other id becomes ``ignore_index`` (255).

The procedural stand-in :class:`~densekd.data.synthetic_cityscapes.SyntheticCityscapes` lives in
:mod:`densekd.data.synthetic_cityscapes`; it is also importable from here.
"""
from __future__ import annotations

import glob
import os
from typing import Sequence

import numpy as np
from torch.utils.data import Dataset

from densekd.data.transforms import IMAGENET_MEAN, IMAGENET_STD, SegEvalTransform, SegTrainTransform
from densekd.registry import DATASETS

try:  # albumentations ships opencv-python-headless; PIL is the fallback
    import cv2
except ImportError:  # pragma: no cover - exercised only without OpenCV
    cv2 = None

IGNORE = 255

# (name, id, trainId) -- the official cityscapesScripts ``labels`` table (helpers/labels.py), 34 ids + plate.
LABEL_TABLE: tuple[tuple[str, int, int], ...] = (
    ("unlabeled", 0, 255), ("ego vehicle", 1, 255), ("rectification border", 2, 255),
    ("out of roi", 3, 255), ("static", 4, 255), ("dynamic", 5, 255), ("ground", 6, 255),
    ("road", 7, 0), ("sidewalk", 8, 1), ("parking", 9, 255), ("rail track", 10, 255),
    ("building", 11, 2), ("wall", 12, 3), ("fence", 13, 4), ("guard rail", 14, 255),
    ("bridge", 15, 255), ("tunnel", 16, 255), ("pole", 17, 5), ("polegroup", 18, 255),
    ("traffic light", 19, 6), ("traffic sign", 20, 7), ("vegetation", 21, 8), ("terrain", 22, 9),
    ("sky", 23, 10), ("person", 24, 11), ("rider", 25, 12), ("car", 26, 13), ("truck", 27, 14),
    ("bus", 28, 15), ("caravan", 29, 255), ("trailer", 30, 255), ("train", 31, 16),
    ("motorcycle", 32, 17), ("bicycle", 33, 18), ("license plate", -1, -1),
)

CLASSES: tuple[str, ...] = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                            "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                            "bus", "train", "motorcycle", "bicycle")

PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)


def label_lut(ignore_index: int = IGNORE) -> np.ndarray:
    """256-entry uint8 look-up table: labelId -> trainId (``ignore_index`` for everything not trained on)."""
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"ignore_index must fit in uint8 (0..255) for Cityscapes label maps; got {ignore_index}")
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for _name, label_id, train_id in LABEL_TABLE:
        if 0 <= label_id and 0 <= train_id < 255:
            lut[label_id] = train_id
    return lut


def encode_labels(label_ids: np.ndarray, ignore_index: int = IGNORE) -> np.ndarray:
    """Map a labelIds map (H x W ints, official ids) to train ids (uint8, ignore -> ``ignore_index``)."""
    label_ids = np.asarray(label_ids)
    out = np.full(label_ids.shape, ignore_index, dtype=np.uint8)
    valid = (label_ids >= 0) & (label_ids <= 255)
    out[valid] = label_lut(ignore_index)[label_ids[valid].astype(np.int64)]
    return out


def train_id_lut() -> np.ndarray:
    """256-entry uint8 look-up table: trainId -> the official labelId (train ids 0..18 -> 7, 8, 11, ..., 33; every
    other value, ignore included, -> 0 = 'unlabeled')."""
    lut = np.zeros(256, dtype=np.uint8)
    for _name, label_id, train_id in LABEL_TABLE:
        if 0 <= train_id < 255 and label_id >= 0:
            lut[train_id] = label_id
    return lut


def decode_labels(train_ids: np.ndarray) -> np.ndarray:
    """Train-id map (H x W ints) -> official labelIds (uint8), the pixel format of cityscapesScripts' result files
    (``evalPixelLevelSemanticLabeling`` reads label ids, not train ids); ids outside 0..18 -> 0 (unlabeled)."""
    train_ids = np.asarray(train_ids)
    out = np.zeros(train_ids.shape, dtype=np.uint8)
    valid = (train_ids >= 0) & (train_ids < len(CLASSES))
    out[valid] = train_id_lut()[train_ids[valid].astype(np.int64)]
    return out


class CityscapesResults:
    """Benchmark-format predictions of a Cityscapes(-like) dataset (``tools/test.py --format-only``).

    cityscapesScripts' ``evalPixelLevelSemanticLabeling`` (and the test server) looks, for each ground-truth file
    ``<city>_<seq>_<frame>_gtFine_labelIds.png``, for exactly one file matching ``<city>_<seq>_<frame>*.png``
    anywhere under the results folder, whose pixels are the official **label ids** (uint8, same size as the
    image). The result of sample ``i`` is ``labelIds/<city>/<sample_id>_leftImg8bit.png``: point
    ``CITYSCAPES_RESULTS`` (or the server upload) at the ``labelIds`` folder alone, since other pictures of the
    same frame (overlays) would match the pattern too. Subclasses define :meth:`sample_id`."""

    result_kinds = ("label",)

    def sample_id(self, index: int) -> str:
        raise NotImplementedError

    def result_path(self, index: int, kind: str) -> str:
        if kind not in self.result_kinds:
            raise ValueError(f"{type(self).__name__} writes {', '.join(self.result_kinds)} results, not {kind!r}")
        sid = self.sample_id(index)
        return f"labelIds/{sid.split('_')[0]}/{sid}_leftImg8bit.png"

    def encode_result(self, kind: str, result: np.ndarray) -> np.ndarray:
        """Train ids -> the uint8 label-id map of the result file (:func:`decode_labels`)."""
        if kind not in self.result_kinds:
            raise ValueError(f"{type(self).__name__} writes {', '.join(self.result_kinds)} results, not {kind!r}")
        return decode_labels(result)


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """Train-id map (H x W) -> H x W x 3 uint8 RGB with the official colours (ignore -> black)."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(PALETTE)] = np.array(PALETTE, dtype=np.uint8)
    return lut[np.asarray(train_ids).astype(np.int64).clip(0, 255)]


def _read_rgb(path: str) -> np.ndarray:
    if cv2 is not None:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"Could not decode image {path!r} (corrupt or not a PNG/JPEG?)")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _read_label(path: str) -> np.ndarray:
    if cv2 is not None:
        lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if lab is None:
            raise OSError(f"Could not decode label map {path!r} (corrupt or not a PNG?)")
    else:
        from PIL import Image
        with Image.open(path) as im:
            lab = np.asarray(im)
    if lab.ndim != 2:
        raise ValueError(f"Label map {path!r} has shape {lab.shape}; expected a single-channel *_gtFine_labelIds.png "
                         f"(not the *_color.png or *_instanceIds.png file)")
    return lab


def _write_png(path: str, arr: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if cv2 is not None:
        data = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
        if not cv2.imwrite(path, data):
            raise OSError(f"Could not write {path!r}")
    else:
        from PIL import Image
        Image.fromarray(arr).save(path)


def _make_transform(augment: bool, crop_size, scale_range, flip, photometric, mean, std, ignore_index):
    if augment:
        return SegTrainTransform(crop_size=crop_size, scale_range=scale_range, flip=flip, photometric=photometric,
                                 mean=mean, std=std, ignore_index=ignore_index)
    return SegEvalTransform(mean=mean, std=std)


LAYOUT = ("ROOT/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png and "
          "ROOT/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png")


@DATASETS.register()
class Cityscapes(CityscapesResults, Dataset):
    """Cityscapes fine annotations (Cordts et al., CVPR 2016): 19 classes, ignore 255.

    Sample: ``{'image': 3 x H x W float (normalised with mean/std), 'target': H x W long train ids}``.
    Training (``augment``, default for ``split='train'``): random scale in ``scale_range`` (0.5-2.0), pad,
    random ``crop_size`` crop (512 x 1024), horizontal flip, optional colour jitter (``photometric``).
    Evaluation: the full 1024 x 2048 frame, normalised only.

    Args:
        root: dataset root holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``'train'``, ``'val'`` or ``'test'`` (test labels are all ignore in the official release).
        mean, std: RGB normalisation as fractions of 255 (ImageNet by default).

    Metadata (class attributes, what the segmentation task takes): ``class_names`` (the 19 names in train-id
    order, :data:`CLASSES`) and ``palette`` (their official RGB colours, :data:`PALETTE`).
    """

    load_keys = ('image', 'label')  # what load(index) returns, in order

    CLASSES = CLASSES
    PALETTE = PALETTE
    class_names = list(CLASSES)  # metadata the task takes (names in reports, colours in pictures)
    palette = list(PALETTE)
    synthetic = "SyntheticCityscapes"
    num_classes = len(CLASSES)

    def __init__(self, root: str, split: str = "train", crop_size: Sequence[int] | int | None = (512, 1024),
                 scale_range: Sequence[float] | None = (0.5, 2.0), flip: bool = True, photometric: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                 ignore_index: int = IGNORE, augment: bool | None = None):
        if root is None:
            raise FileNotFoundError(f"Cityscapes needs root=PATH (use --data-root), laid out as {LAYOUT}; "
                                    f"or run with --synthetic to use SyntheticCityscapes")
        self.root = os.path.expanduser(str(root))
        self.split = split
        self.ignore_index = int(ignore_index)
        self.lut = label_lut(self.ignore_index)
        img_dir = os.path.join(self.root, "leftImg8bit", split)
        if not os.path.isdir(img_dir):
            what = "root" if not os.path.isdir(self.root) else "split directory"
            raise FileNotFoundError(
                f"Cityscapes {what} not found: {img_dir!r} does not exist. Expected layout: {LAYOUT}. "
                f"Download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com "
                f"and unzip both into ROOT (nothing is downloaded automatically).")
        images = sorted(glob.glob(os.path.join(img_dir, "*", "*_leftImg8bit.png")))
        if not images:
            raise FileNotFoundError(f"No *_leftImg8bit.png files under {img_dir!r}/{{city}}/. Expected layout: {LAYOUT}")
        label_dir = os.path.join(self.root, "gtFine", split)

        def label_path(img: str) -> str:
            rel = os.path.relpath(img, img_dir)
            return os.path.join(label_dir, rel[: -len("_leftImg8bit.png")] + "_gtFine_labelIds.png")

        labels = []
        for img in images:
            lab = label_path(img)
            if not os.path.isfile(lab):
                missing = sum(not os.path.isfile(label_path(i)) for i in images)
                raise FileNotFoundError(
                    f"Cityscapes label missing for {img!r}: expected {lab!r} ({missing} of {len(images)} images "
                    f"in split {split!r} have no label). Expected layout: {LAYOUT}")
            labels.append(lab)
        self.images, self.labels = images, labels
        augment = split == "train" if augment is None else bool(augment)
        self.augment = augment
        self.transform = _make_transform(augment, crop_size, scale_range, flip, photometric, mean, std,
                                         self.ignore_index)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw sample: (H x W x 3 uint8 RGB, H x W uint8 train ids) before any transform."""
        image = _read_rgb(self.images[index])
        label = self.lut[_read_label(self.labels[index]).astype(np.int64).clip(0, 255)]
        if label.shape != image.shape[:2]:
            raise ValueError(f"Label {self.labels[index]!r} is {label.shape} but image {self.images[index]!r} is "
                             f"{image.shape[:2]}")
        return image, label

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        return self.transform(image, label)

    def sample_id(self, index: int) -> str:
        """The official id of sample ``index``: ``<city>_<seq>_<frame>`` (its image's name without
        ``_leftImg8bit.png``), e.g. ``frankfurt_000000_000294``."""
        return os.path.basename(self.images[index])[: -len("_leftImg8bit.png")]

    def sample_files(self, index: int) -> list[str]:
        """The image and label files of sample ``index`` (named when one of them cannot be read)."""
        return [self.images[index], self.labels[index]]

    def check_sample(self, index: int) -> None:
        """Decode sample ``index``'s image and label map once (``tools/check_data.py``); raises on a bad file."""
        self.load(index)

    def __repr__(self) -> str:
        return f"Cityscapes(root={self.root!r}, split={self.split!r}, n={len(self)}, augment={self.augment})"


def __getattr__(name: str):
    # ``from densekd.data.cityscapes import SyntheticCityscapes`` keeps working; resolved lazily because
    # densekd.data.synthetic_cityscapes imports this module.
    if name == "SyntheticCityscapes":
        from densekd.data.synthetic_cityscapes import SyntheticCityscapes

        return SyntheticCityscapes
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
