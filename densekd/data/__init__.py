"""Datasets (registered in ``densekd.registry.DATASETS``) and reproducible loaders."""
from densekd.data import cifar, cityscapes, crd, pairs, scene_labels, synthetic_cityscapes  # noqa: F401
