"""Shared by the device-synchronisation tests: counting the reads of tensor values back to the host."""
import contextlib

import torch

TEACHER = "teacher = dict(model=dict(type='simple_cnn', num_classes=100, width=8))\n"
KD_AT = TEACHER + "distill = [dict(type='KD', T=4, weight=0.9), dict(type='AT', student='feats[1:-1]', weight=100)]\n"
READBACKS = ("item", "tolist", "__bool__", "__float__", "__int__")


@contextlib.contextmanager
def counting_readbacks():
    """Count the Python-level calls that copy a tensor's value to the host (each one a device sync on a GPU)."""
    counts = {name: 0 for name in READBACKS}
    originals = {name: getattr(torch.Tensor, name) for name in READBACKS}

    def wrap(name):
        def counted(self, *args, **kwargs):
            counts[name] += 1
            return originals[name](self, *args, **kwargs)
        return counted

    for name in READBACKS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield counts
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)
