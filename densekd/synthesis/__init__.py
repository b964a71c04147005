"""Data-free distillation: datasets synthesised from a frozen teacher.

* :mod:`~densekd.synthesis.bn`: BatchNorm input statistics, DeepInversion's feature regulariser and The Knowledge
  Within's Gaussian KL;
* :mod:`~densekd.synthesis.priors`: total variation, image L2, jitter / flip, Jensen-Shannon divergence;
* :mod:`~densekd.synthesis.methods`: the objectives (``deepinversion``, ``bns``, ``inception``, ``gaussian``),
  registered in ``SYNTHESIS_METHODS``;
* :mod:`~densekd.synthesis.settings`: the ``synthesis`` config section;
* :mod:`~densekd.synthesis.runner`: batch-wise, resumable optimisation writing an HDF5 dataset
  (:class:`~densekd.data.synthesized.SynthesizedImages` reads it);
* :mod:`~densekd.synthesis.similarity`: the BNS dataset-similarity measure.

The package sits above the engine (it uses its builders and checkpoint readers, not the trainer); the trainer
knows nothing of it: a distillation on synthesised images is an ordinary config whose ``data.train`` is a
``SynthesizedImages`` dataset. ``tools/synthesize.py`` and ``tools/bn_similarity.py`` are the command lines.
"""
