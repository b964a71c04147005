"""Datasets (registered in ``densekd.registry.DATASETS``) and reproducible loaders."""
from densekd.data import (cifar, cityscapes, crd, nyu, pairs, scene_labels, stl10, synthesized,  # noqa: F401
                          synthetic_cityscapes, synthetic_nyu, synthetic_stl10, synthetic_tinyimagenet, tinyimagenet)
