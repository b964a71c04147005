"""Dataset metadata (class names, palettes) and how tasks take it: datasets own it, wrappers forward it."""
import pickle

import pytest

from densekd.data.cifar import CIFAR100, FINE_LABEL_NAMES, SyntheticCIFAR100, write_cifar100_pickles
from densekd.data.crd import CRDSampleDataset
from densekd.data.pairs import ClassPairDataset
from densekd.registry import TASKS
from densekd.tasks.base import dataset_metadata
from densekd.tasks.classification import ClassificationTask

# A few official CIFAR-100 fine labels at their indices (cs.toronto.edu/~kriz/cifar.html, meta pickle)
KNOWN = {0: "apple", 1: "aquarium_fish", 39: "keyboard", 41: "lawn_mower", 58: "pickup_truck", 99: "worm"}


def test_cifar100_names_are_the_official_fine_labels():
    assert len(FINE_LABEL_NAMES) == 100 and len(set(FINE_LABEL_NAMES)) == 100
    assert list(FINE_LABEL_NAMES) == sorted(FINE_LABEL_NAMES)  # the official order is alphabetical
    for i, name in KNOWN.items():
        assert FINE_LABEL_NAMES[i] == name
    assert SyntheticCIFAR100.class_names == list(FINE_LABEL_NAMES) and SyntheticCIFAR100.palette is None
    assert CIFAR100.class_names == list(FINE_LABEL_NAMES)


def test_real_cifar100_reads_names_from_meta(tmp_path):
    import numpy as np

    images = {"train": np.zeros((3, 32, 32, 3), np.uint8)}
    folder = write_cifar100_pickles(tmp_path, images, {"train": [0, 1, 2]})
    ds = CIFAR100(str(tmp_path), split="train")
    assert ds.class_names == [f"class_{i}" for i in range(100)]  # what the meta file says
    assert type(ds).class_names == list(FINE_LABEL_NAMES)  # the class attribute is untouched
    (folder / "meta").unlink()
    assert CIFAR100(str(tmp_path), split="train").class_names == list(FINE_LABEL_NAMES)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": ["a", "b"]}, f)
    with pytest.raises(ValueError, match="fine_label_names has 2 names"):
        CIFAR100(str(tmp_path), split="train")


@pytest.mark.parametrize("wrapper", [lambda d: CRDSampleDataset(d, nce_k=4), ClassPairDataset])
def test_wrappers_forward_the_inner_datasets_metadata(wrapper):
    inner = SyntheticCIFAR100(split="test", num_samples=20)
    inner.class_names = [f"n{i}" for i in range(100)]  # instance metadata, as a real copy's meta file sets
    ds = wrapper(inner)
    assert ds.class_names == inner.class_names and ds.palette is None
    assert dataset_metadata(ds) == {"class_names": inner.class_names}  # no palette: None is left out


def test_wrapper_forwards_a_segmentation_palette():
    class Labelled:
        targets = [0, 1, 0, 1]
        class_names = ["a", "b"]
        palette = [(1, 2, 3), (4, 5, 6)]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return {"image": None, "target": self.targets[i]}

    assert dataset_metadata(ClassPairDataset(Labelled())) == {"class_names": ["a", "b"],
                                                               "palette": [(1, 2, 3), (4, 5, 6)]}


def test_dataset_without_metadata_gives_no_defaults():
    class Bare:
        pass

    assert dataset_metadata(Bare()) == {}
    task = TASKS.build(dict(type="segmentation", num_classes=2), **dataset_metadata(Bare()))
    assert task.class_names == ["class0", "class1"]


def test_classification_task_takes_class_names_as_a_default():
    ds = SyntheticCIFAR100(split="test", num_samples=4)
    task = TASKS.build(dict(type="classification", label_smoothing=0.1), **dataset_metadata(ds))
    assert isinstance(task, ClassificationTask) and task.class_names == list(FINE_LABEL_NAMES)
    assert task.label_smoothing == 0.1
    assert ClassificationTask().class_names is None
    assert task.metric_report({"top1": 50.0, "top5": 80.0}) == "" and task.legend() is None
    with pytest.raises(ValueError, match="list of names"):
        ClassificationTask(class_names="apple")
    with pytest.raises(NotImplementedError, match="draws no pictures"):
        task.draw_target(3)
