"""Benchmarks of the training step: what a distilled step costs against its bound (issue 13).

* :mod:`~densekd.bench.measure`: interleaved timing rounds, the statistics, the per-step peak memory;
* :mod:`~densekd.bench.suites`: which configs a suite times (CIFAR-100, Cityscapes, NYU depth) and at which
  sizes, and the issue's targets;
* :mod:`~densekd.bench.runner`: builds every candidate of a suite in one process and times them;
* :mod:`~densekd.bench.pairwise`: the pair-wise term's memory and time against its node count;
* :mod:`~densekd.bench.report`: the JSON and Markdown files;
* :mod:`~densekd.bench.cli`: ``python tools/benchmark.py --suite ...``.

It sits above the engine (like ``probe/``): it builds :class:`~densekd.engine.trainer.Trainer` objects exactly
as training does and calls their ``train_iteration``; nothing in the engine knows about it.
"""
