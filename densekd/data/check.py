"""Decode every sample of a config's datasets once and list all bad files together (``tools/check_data.py``,
``tools/train.py --check-data``), so that a long run does not die at hour three on one corrupt image.

A dataset may define ``check_sample(index)`` (decode the raw files of one sample and check its labels,
without augmentation: Cityscapes reads the image and label map, CIFAR-100 checks the label range); any
other dataset is checked by reading ``dataset[index]``. ``sample_files(index)`` names the files in the report.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import DataLoader, Dataset

from densekd.data.sampling import base_dataset, forked_rng, sample_error, usable_workers


@dataclass
class BadSample:
    split: str
    index: int
    message: str  # names the files


class _Checker(Dataset):
    def __init__(self, dataset):
        self.dataset = dataset
        self.base = base_dataset(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            with forked_rng(index):
                fn = getattr(self.base, "check_sample", None)
                if fn is not None and self.base is not self.dataset and len(self.base) != len(self.dataset):
                    fn = None
                if fn is not None:
                    fn(index)
                else:
                    self.dataset[index]
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            return index, sample_error(self.dataset, index, exc)
        return index, None


def check_dataset(dataset, split: str, num_workers: int = 0, progress=None) -> list[BadSample]:
    """Every sample of ``dataset`` that cannot be read, in index order."""
    loader = DataLoader(_Checker(dataset), batch_size=8, num_workers=usable_workers(num_workers),
                        collate_fn=list, shuffle=False)
    bad = []
    done = 0
    for results in loader:
        for index, message in results:
            if message is not None:
                bad.append(BadSample(split, index, message))
        done += len(results)
        if progress is not None:
            progress(done, len(dataset))
    return bad


def check_config(cfg, splits=("train", "val"), num_workers: int = 0, log=print) -> tuple[list[BadSample], dict]:
    """Build each split's dataset of ``cfg`` and check every sample; ``(bad samples, {split: n samples})``.
    A dataset that cannot even be built (missing folder, unreadable index file) is one bad entry."""
    import copy

    from densekd.registry import DATASETS

    bad, counts = [], {}
    for split in splits:
        dcfg = (cfg.get("data") or {}).get(split)
        if not dcfg:
            continue
        try:
            dataset = DATASETS.build(copy.deepcopy(dcfg), where=f"data.{split}")
        except Exception as exc:  # noqa: BLE001
            bad.append(BadSample(split, -1, f"{type(exc).__name__}: {exc}"))
            continue
        counts[split] = len(dataset)
        log(f"checking {split}: {len(dataset)} samples of {type(base_dataset(dataset)).__name__}")
        bad += check_dataset(dataset, split, num_workers)
    return bad, counts


def report(bad: list[BadSample], counts: dict) -> str:
    total = sum(counts.values())
    if not bad:
        return f"all {total} samples read ({', '.join(f'{s}: {n}' for s, n in counts.items())})"
    lines = [f"{len(bad)} bad samples of {total}:"]
    lines += [f"  [{b.split}] {b.message}" for b in bad]
    lines.append("Replace or remove these files (or re-extract the dataset archives), then check again.")
    return "\n".join(lines)
