"""Strategies: who trains and how one step goes (see :mod:`densekd.strategies.base`)."""
from densekd.strategies.base import BuildContext, Phase, Strategy  # noqa: F401
from densekd.strategies.distillation import DistillationStrategy  # noqa: F401
from densekd.strategies.mutual import MutualLearningStrategy  # noqa: F401
from densekd.strategies.kdcl import KDCLStrategy  # noqa: F401
from densekd.strategies.bss import BSSStrategy  # noqa: F401
from densekd.strategies.active_mixup import ActiveMixupStrategy  # noqa: F401
