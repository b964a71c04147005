"""Tasks: task loss, evaluation-time inference and metrics. Registered in ``densekd.registry.TASKS``."""
from densekd.tasks import classification, depth, multitask, representation, segmentation  # noqa: F401
