"""Datasets (registered in ``densekd.registry.DATASETS``) and reproducible loaders."""
from densekd.data import cifar, cityscapes, crd, pairs, synthetic_cityscapes  # noqa: F401
