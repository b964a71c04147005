"""densekd: knowledge distillation for dense prediction, classification and cross-modal transfer."""

__version__ = "0.1.0"
