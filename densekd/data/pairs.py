"""Dataset wrapper for class-wise self-distillation (CS-KD): each sample with a random class-mate's image.

Reference: Yun et al., "Regularizing Class-wise Predictions via Self-knowledge Distillation", CVPR 2020
(the authors' ``PairBatchSampler`` puts, for each of B random samples, another sample of the same class in
the second half of a 2B batch).
"""
from __future__ import annotations

from densekd.data.labelled import ClassIndexedWrapper
from densekd.registry import DATASETS

__all__ = ["ClassPairDataset"]


@DATASETS.register()
class ClassPairDataset(ClassIndexedWrapper):
    """Item ``i`` is the inner sample plus ``'pair_image'``: the (augmented) image of a uniformly random
    *other* sample of the same class (the sample itself when its class has no other member).

    With batch size ``B`` a step sees ``B`` anchors and ``B`` partners, i.e. the authors' batch of ``2B``
    (their CIFAR-100 recipe: 128 = 64 anchors + 64 partners). The partner is drawn with numpy's global RNG,
    which the trainer seeds per sample, so draws are reproducible across resume and workers.

    Args: ``dataset``: the inner labelled dataset (object or config dict) with ``.targets``.
    """

    def __getitem__(self, index: int) -> dict:
        index, out = self.inner_sample(index)
        partner = self.dataset[self.other_of_class(index)]
        out["pair_image"] = partner["image"]
        return out
