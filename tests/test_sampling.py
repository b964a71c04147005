import random

import numpy as np
import torch

from densekd.data.sampling import ResumableBatchSampler, SeededDataset, forked_rng


def test_epoch_is_a_permutation_and_depends_on_seed_and_epoch():
    s = ResumableBatchSampler(10, 3, shuffle=True, seed=1)
    idx = [i for b in s for i, _ in b]
    assert sorted(idx) == list(range(10)) and len(s) == 4
    s.set_epoch(1)
    assert [i for b in s for i, _ in b] != idx
    assert [i for b in ResumableBatchSampler(10, 3, seed=1) for i, _ in b] == idx


def test_two_ranks_together_see_the_single_process_global_batches():
    one = list(ResumableBatchSampler(20, 8, seed=3, drop_last=True))
    r0 = list(ResumableBatchSampler(20, 4, seed=3, drop_last=True, rank=0, world_size=2))
    r1 = list(ResumableBatchSampler(20, 4, seed=3, drop_last=True, rank=1, world_size=2))
    assert [sorted(a + b) for a, b in zip(r0, r1)] == [sorted(b) for b in one]


def test_padding_gives_equal_shares_and_eval_split_has_no_duplicates():
    r = [list(ResumableBatchSampler(10, 4, seed=0, rank=k, world_size=2)) for k in range(2)]
    assert all(len(b) == 4 for rank in r for b in rank)
    e = [list(ResumableBatchSampler(7, 2, shuffle=False, rank=k, world_size=2, pad=False)) for k in range(2)]
    seen = [i for rank in e for b in rank for i, _ in b]
    assert sorted(seen) == list(range(7))


def test_start_batch_resumes_mid_epoch():
    s = ResumableBatchSampler(17, 4, seed=5)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=3)
    assert list(s) == full[3:]


class Noisy(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_seeded_dataset_depends_only_on_seed_and_restores_rng():
    ds = SeededDataset(Noisy())
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = ds[(1, 42)]
    assert torch.equal(torch.random.get_rng_state(), before)
    np.random.seed(9)
    assert ds[(1, 42)] == a and ds[(1, 43)] != a
    with forked_rng(7):
        x = np.random.rand()
    with forked_rng(7):
        assert np.random.rand() == x
