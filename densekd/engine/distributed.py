"""torchrun integration: process group set-up, rank queries, reductions."""
from __future__ import annotations

import gc
import os
from datetime import timedelta

import torch
import torch.distributed as dist


class DeviceError(ValueError, RuntimeError):
    """The requested device cannot be used (a start-up error in one line)."""


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1


def setup(device: str) -> torch.device:
    """Initialise the process group when launched by torchrun; return this process's device.

    NCCL on CUDA, gloo on CPU. ``device`` is ``'cpu'``, ``'cuda'`` or ``'auto'``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        why = ("this PyTorch build has no CUDA support" if torch.version.cuda is None else
               f"PyTorch (CUDA {torch.version.cuda}) sees no usable GPU")
        raise DeviceError(f"--device cuda: CUDA is not available ({why}); use --device cpu, or --device auto to "
                          f"take a GPU when there is one")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if launched_by_torchrun() and not is_distributed():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
        global _HOST_GROUP
        # control messages (the stop flag) travel over gloo between the hosts' CPUs: under NCCL a device
        # all-reduce would make every check wait for the GPU's queued work
        _HOST_GROUP = dist.new_group(backend="gloo") if backend == "nccl" else None
    if device.startswith("cuda"):
        return torch.device("cuda", local_rank if launched_by_torchrun() else torch.cuda.current_device())
    return torch.device("cpu")


def teardown() -> None:
    """Destroy the process group while the interpreter is whole.

    Objects that refer to the group (DDP wrappers and their reducers, often inside reference cycles) must be
    gone first: the group's worker threads are joined only when its last reference is dropped, and a worker
    that frees a finished collective after Python has begun finalising aborts the process ("terminate called
    without an active exception", SIGABRT) after a successful run. Callers drop their trainers before this;
    the collections here free what cycles still hold, so the group's threads end before ``exit``."""
    global _HOST_GROUP
    if is_distributed():
        gc.collect()
        _HOST_GROUP = None
        dist.destroy_process_group()
        gc.collect()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a copy; identity when not distributed). gloo/NCCL need the process's device."""
    if not is_distributed():
        return tensor
    out = tensor.clone()
    if dist.get_backend() == "nccl" and not out.is_cuda:
        out = out.cuda()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device)


_HOST_GROUP = None


def all_reduce_host(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of a CPU tensor over ranks through a gloo group (the default group under gloo, a gloo group made at
    :func:`setup` under NCCL): no device work, so no wait for the GPU. Identity when not distributed."""
    if not is_distributed():
        return tensor
    out = tensor.detach().cpu().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=_HOST_GROUP)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    return all_reduce_sum(tensor) / world_size()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every BatchNorm of ``module`` (in place) by a SyncBatchNorm with the same parameters, buffers
    and forward hooks, so feature taps registered on a BatchNorm keep recording. CUDA only (PyTorch's
    SyncBatchNorm). Returns ``module``."""
    from torch import nn

    for name, child in list(module.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, nn.SyncBatchNorm):
            synced = nn.SyncBatchNorm.convert_sync_batchnorm(child)
            synced._forward_hooks = child._forward_hooks  # the same dicts: tap handles stay valid
            synced._forward_pre_hooks = child._forward_pre_hooks
            setattr(module, name, synced)
        else:
            convert_sync_batchnorm(child)
    return module


def rank_synchronised_buffers(module: torch.nn.Module) -> list[str]:
    """Fully qualified names of the buffers that submodules keep identical across ranks themselves (the
    :class:`~densekd.losses.base.RankSynchronised` capability); DDP is told not to broadcast them."""
    from densekd.losses.base import RankSynchronised

    names = []
    for prefix, sub in module.named_modules():
        if isinstance(sub, RankSynchronised):
            names += [f"{prefix}.{b}" if prefix else b for b in sub.rank_synchronised_buffers]
    return names
