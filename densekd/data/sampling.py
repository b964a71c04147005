"""Reproducible, resumable, rank-aware batching.

Two ideas make a run repeatable bit for bit, whatever the number of workers
or processes and wherever it was interrupted:

* :class:`ResumableBatchSampler` draws the epoch's permutation from
  ``(seed, epoch)`` alone, cuts it into *global* batches, and gives each rank
  its contiguous share of every global batch. It can start mid-epoch.
* :class:`SeededDataset` receives ``(index, sample_seed)`` and seeds Python's,
  NumPy's and torch's global RNGs for the duration of that one sample, so its
  augmentation depends on ``(seed, epoch, position)`` only. The caller's RNG
  states are restored afterwards.

A sample that cannot be read (a corrupt image, a truncated label file) raises :class:`DataFileError`
naming the sample and its files (:func:`sample_files`), also from inside a DataLoader worker. Loaders never
start more worker processes than the process may use cores (:func:`usable_workers`).

A dataset may take part in batching through two optional methods, found through wrappers
(:func:`base_dataset`): ``collate(items) -> batch`` replaces ``default_collate`` in its loaders
(:func:`dataset_collate`), and ``on_device(batch) -> batch`` finishes a batch after it was moved to its device
(:func:`device_step`; the trainer, the evaluation and the probes call it) -- e.g. ImageNet's ``decode='device'``
ships JPEG bytes from the workers and decodes them on the GPU. :func:`collate_samples` does both on the CPU, for
batches made outside a loader (shape probes, BatchNorm calibration).
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

_MIX = 0x9E3779B97F4A7C15


def mix_seed(*parts: int) -> int:
    """A 31-bit seed from integers (splitmix-style, stable across runs and platforms)."""
    h = 0
    for p in parts:
        h = (h ^ (int(p) + _MIX + (h << 6) + (h >> 2))) & 0xFFFFFFFFFFFFFFFF
        h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFF


@contextlib.contextmanager
def forked_rng(seed: int):
    """Seed ``random``, ``numpy`` and torch (CPU) inside the block; restore the old states after."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.random.set_rng_state(torch_state)


class DataFileError(ValueError):
    """A sample whose file(s) cannot be read or decoded: the message names the dataset, the index and the files."""


def base_dataset(dataset):
    """The dataset under wrappers such as CRDSampleDataset / ClassPairDataset (their ``dataset`` attribute)."""
    seen = 0
    while not hasattr(dataset, "sample_files") and isinstance(getattr(dataset, "dataset", None), Dataset) \
            and seen < 8:
        dataset, seen = dataset.dataset, seen + 1
    return dataset


def sample_files(dataset, index: int) -> list[str]:
    """The files sample ``index`` is read from (``dataset.sample_files(index)``, through wrappers), or []."""
    base = base_dataset(dataset)
    fn = getattr(base, "sample_files", None)
    if fn is None:
        return []
    try:
        return [str(f) for f in fn(index)]
    except Exception:  # noqa: BLE001 - only for the message
        return []


def sample_error(dataset, index: int, exc: BaseException) -> str:
    """``'sample 12 of Cityscapes (a.png, b.png): cannot decode ...'``."""
    files = sample_files(dataset, index)
    name = getattr(exc, "filename", None)
    if name and str(name) not in files:
        files.append(str(name))
    where = f" ({', '.join(files)})" if files else ""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"sample {index} of {type(base_dataset(dataset)).__name__}{where}: {reason}"


def dataset_collate(dataset):
    """The dataset's own ``collate`` (through wrappers), else ``default_collate``."""
    fn = getattr(base_dataset(dataset), "collate", None)
    return fn if callable(fn) else default_collate


def device_step(dataset):
    """The dataset's ``on_device(batch) -> batch`` (through wrappers), or None."""
    fn = getattr(base_dataset(dataset), "on_device", None)
    return fn if callable(fn) else None


def collate_samples(dataset, items: list) -> dict:
    """``items`` (samples of ``dataset``) as one batch on the CPU: the dataset's collate, then its device step."""
    batch = dataset_collate(dataset)(items)
    step = device_step(dataset)
    return step(batch) if step is not None else batch


# what decoding a damaged file raises (PIL's UnidentifiedImageError is an OSError, cv2.error a subclass of Exception)
DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError)


class SeededDataset(Dataset):
    """Wrap a dataset so that item ``(index, seed)`` is produced under RNGs seeded with ``seed``; a sample
    that cannot be read raises :class:`DataFileError` naming its files."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        try:
            with forked_rng(seed):
                return self.dataset[index]
        except DataFileError:
            raise
        except DECODE_ERRORS as exc:
            raise DataFileError(sample_error(self.dataset, index, exc)) from exc
        except Exception as exc:  # noqa: BLE001 - e.g. cv2.error: a decoder's own exception type
            if type(exc).__module__.split(".")[0] in ("cv2", "PIL", "imageio", "pickle", "zlib"):
                raise DataFileError(sample_error(self.dataset, index, exc)) from exc
            raise


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the platform has it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def usable_workers(requested: int) -> int:
    """``requested`` DataLoader workers, at most the usable cores shared by the processes of this machine
    (``LOCAL_WORLD_SIZE`` under torchrun): more only compete for the same cores (and DataLoader warns)."""
    if requested <= 0:
        return 0
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return min(int(requested), max(usable_cores() // local, 1))


class ResumableBatchSampler(Sampler):
    """Batches of ``(index, sample_seed)`` for one rank.

    Args:
        num_samples: dataset length.
        batch_size: samples per rank per batch (the global batch is ``batch_size * world_size``).
        shuffle: permute each epoch with a generator seeded by ``(seed, epoch)``.
        drop_last: drop the last incomplete global batch. Otherwise it is kept: in a
            distributed run it is completed by wrapping around to the start of the
            permutation, so that every rank gets a full share.
        rank, world_size: this process's place in a distributed run.
        pad: for evaluation use ``pad=False, shuffle=False``: the tail is split between ranks
            without duplicates (a rank may get a smaller or empty last batch).
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1, pad: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_samples < 1:
            raise ValueError("the dataset is empty")
        self.num_samples, self.batch_size, self.shuffle, self.seed = num_samples, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size, self.pad = drop_last, rank, world_size, pad
        self.epoch = 0
        self.start_batch = 0
        if drop_last and num_samples < batch_size * world_size:
            raise ValueError(f"drop_last with {num_samples} samples and a global batch of "
                             f"{batch_size * world_size} leaves no batch; lower the batch size")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.global_batch)
        return full + (1 if rest and not self.drop_last else 0)

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_samples))
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        return torch.randperm(self.num_samples, generator=g).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self._order()
        gb = self.global_batch
        for b in range(self.start_batch, len(self)):
            positions = list(range(b * gb, min((b + 1) * gb, self.num_samples)))
            if len(positions) < gb and self.pad and self.world_size > 1:
                positions = list(range(b * gb, (b + 1) * gb))  # wrap around: equal shares for every rank
            if self.pad:
                mine = positions[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            else:  # split the (possibly short) batch as evenly as possible, no duplicates
                per = -(-len(positions) // self.world_size)
                mine = positions[self.rank * per:(self.rank + 1) * per]
            if not mine:
                continue
            yield [(order[p % self.num_samples], mix_seed(self.seed, self.epoch, p)) for p in mine]


def build_loader(dataset: Dataset, batch_size: int, *, shuffle: bool, seed: int, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0, pin_memory: bool = False,
                 train: bool = True, persistent_workers: bool = False, prefetch_factor: int | None = None
                 ) -> DataLoader:
    """A DataLoader over ``SeededDataset(dataset)`` with a :class:`ResumableBatchSampler`.

    The loader gets its own torch generator so that creating its iterator
    never consumes the global RNG (which would perturb training). ``num_workers`` is capped by
    :func:`usable_workers`. ``persistent_workers`` keeps the worker processes between epochs (the batch order
    is drawn in the main process, so epochs and mid-epoch resume are unaffected) and ``prefetch_factor`` is the
    batches each worker prepares ahead (PyTorch's default 2); both apply only with workers. The dataset's own
    ``collate`` replaces ``default_collate`` (:func:`dataset_collate`).
    """
    sampler = ResumableBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                    rank=rank, world_size=world_size, pad=train)
    workers = usable_workers(num_workers)
    extra = {}
    if workers > 0:
        extra["persistent_workers"] = bool(persistent_workers)
        if prefetch_factor is not None:
            if int(prefetch_factor) < 1:
                raise ValueError(f"data.prefetch_factor must be >= 1 (batches each worker loads ahead); got "
                                 f"{prefetch_factor!r}")
            extra["prefetch_factor"] = int(prefetch_factor)
    return DataLoader(SeededDataset(dataset), batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                      collate_fn=dataset_collate(dataset), generator=torch.Generator(), **extra)
