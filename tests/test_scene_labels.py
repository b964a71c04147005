"""Image-level labels from label maps (the cross-modal RGB teacher's classification view of NYU)."""
import numpy as np
import pytest
import torch

from densekd.data.scene_labels import DominantClassDataset, dominant_class


def test_dominant_class_by_hand():
    label = np.array([[0, 0, 0, 1], [2, 2, 255, 255], [1, 3, 3, 3]])
    assert dominant_class(label, 4) == 0  # 0 and 3: three pixels each -> the smaller id
    assert dominant_class(label, 4, exclude=[0]) == 3
    assert dominant_class(label, 4, exclude=[0, 1, 2, 3]) == 0  # nothing left: the most frequent overall
    assert dominant_class(np.full((2, 2), 255), 4) == 0


class Maps(torch.utils.data.Dataset):
    num_classes = 5
    ignore_index = 255

    def __init__(self):
        self.maps = [np.array([[1, 1], [0, 0]]), np.array([[4, 0], [0, 0]]), np.array([[2, 3], [3, 255]])]

    def __len__(self):
        return 3

    def load(self, i):
        return {"image": np.zeros((2, 2, 3), np.uint8), "label": self.maps[i]}

    def __getitem__(self, i):
        return {"image": torch.zeros(3, 2, 2), "label": torch.tensor(self.maps[i]), "target": torch.tensor(self.maps[i])}


def test_wrapper_adds_image_labels_and_keeps_the_maps():
    ds = DominantClassDataset(Maps(), exclude=[0])
    assert ds.targets == [1, 4, 3] and ds.num_classes == 5 and len(ds) == 3
    item = ds[1]
    assert item["target"].item() == 4 and torch.equal(item["label"], torch.tensor([[4, 0], [0, 0]]))
    with pytest.raises(KeyError, match="has no 'seg' label map"):
        DominantClassDataset(Maps(), label_key="seg")


def test_tuple_loads_are_named_by_load_keys():
    from densekd.data.synthetic_nyu import SyntheticNYUDepthV2

    rooms = SyntheticNYUDepthV2(split="train", num_samples=3, size=(24, 32))
    ds = DominantClassDataset(rooms, exclude=[0, 1, 21])
    for i in range(3):
        label = rooms.load(i)[2]
        assert ds.targets[i] == dominant_class(label, 40, [0, 1, 21])
    assert rooms.load_keys == ("image", "depth", "label")
