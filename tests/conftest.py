import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


TINY_CIFAR = """
_base_ = ['{root}/configs/_base_/cifar100_classification.py']
model = dict(type='simple_cnn', num_classes=100, width=8, norm={norm!r})
data = dict(train=dict(type='SyntheticCIFAR100', split='train', num_samples={n_train}),
            val=dict(type='SyntheticCIFAR100', split='test', num_samples={n_val}),
            batch_size={batch}, val_batch_size=32, num_workers=0)
optimizer = dict(lr=0.05)
lr_schedule = dict(milestones=[2], gamma=0.1)
train = dict(epochs={epochs}, log_interval=2, eval_interval=1)
"""


@pytest.fixture
def tiny_config(tmp_path):
    """A fast CIFAR-100-format config (synthetic data, a small CNN)."""

    def make(name="tiny.py", norm="bn", n_train=48, n_val=32, batch=8, epochs=2, extra=""):
        text = TINY_CIFAR.format(root=ROOT, norm=norm, n_train=n_train, n_val=n_val, batch=batch, epochs=epochs)
        return write_config(tmp_path / name, text + extra)

    return make
