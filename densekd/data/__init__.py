"""Datasets (registered in ``densekd.registry.DATASETS``) and reproducible loaders."""
from densekd.data import (cifar, cityscapes, crd, imagenet, multiview, nyu, pairs, scene_labels, stl10,  # noqa: F401
                          subset, synthesized, synthetic_cityscapes, synthetic_imagenet, synthetic_nyu,
                          synthetic_stl10, synthetic_tinyimagenet, tinyimagenet)
