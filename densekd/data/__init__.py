"""Datasets (registered in ``densekd.registry.DATASETS``) and reproducible loaders."""
from densekd.data import cifar, cityscapes, crd, nyu, pairs, scene_labels, synthetic_cityscapes, synthetic_nyu  # noqa: F401
