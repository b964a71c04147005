"""CRD (Tian et al., ICLR 2020): loss values against the reference equations, memory bank, Z, dataset wrapper."""
from __future__ import annotations

import math
import os
import pickle
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from densekd.data.crd import CRDSampleDataset
from densekd.losses import CRD
from densekd.registry import DATASETS, LOSSES

N, K, D, B, DS, DT = 12, 5, 8, 3, 6, 10


def make_loss(objective="nce", nce_k=K, num_data=N, seed=0, **kw):
    torch.manual_seed(seed)
    return CRD(s_shapes=[torch.Size([B, DS])], t_shapes=[torch.Size([B, DT])], num_data=num_data, feat_dim=D,
               nce_k=nce_k, objective=objective, **kw)


def make_batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(B, DS, generator=g)
    f_t = torch.randn(B, DT, generator=g)
    index = torch.tensor([3, 7, 0])
    contrast_idx = torch.tensor([[3, 1, 5, 9, 11, 2],
                                 [7, 0, 4, 4, 10, 8],
                                 [0, 6, 2, 11, 1, 5]])
    return f_s, f_t, index, contrast_idx


def set_known_memory(loss, seed=2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        loss.memory_s.copy_(F.normalize(torch.randn(N, D, generator=g), dim=1))
        loss.memory_t.copy_(F.normalize(torch.randn(N, D, generator=g), dim=1))


def embed(lin, x):
    """Independent LinearEmbed: y = x W^T + b, divided by its L2 norm (plain loops over rows)."""
    y = x.flatten(1) @ lin.weight.detach().T + lin.bias.detach()
    return torch.stack([row / math.sqrt(float((row ** 2).sum())) for row in y])


def reference_scores(loss, f_s, f_t, contrast_idx, mem_s, mem_t, T=0.07):
    """scores[b, i] = <memory[contrast_idx[b, i]], anchor[b]> / T written as loops (both directions)."""
    e_s, e_t = embed(loss.embed_s.linear, f_s), embed(loss.embed_t.linear, f_t)
    s_s = torch.zeros(B, K + 1, dtype=torch.float64)
    s_t = torch.zeros(B, K + 1, dtype=torch.float64)
    for b in range(B):
        for i in range(K + 1):
            j = int(contrast_idx[b, i])
            s_s[b, i] = float((mem_t[j] * e_s[b]).sum()) / T  # student anchor vs teacher memory
            s_t[b, i] = float((mem_s[j] * e_t[b]).sum()) / T  # teacher anchor vs student memory
    return s_s, s_t, e_s, e_t


def reference_contrast_loss(scores, Z, n_data, eps=1e-7):
    """RepDistiller ContrastLoss (paper Eq. 18) on exp(scores)/Z, with its eps."""
    bsz, m = scores.shape[0], scores.shape[1] - 1
    pn = 1.0 / n_data
    total = 0.0
    for b in range(bsz):
        p_pos = math.exp(float(scores[b, 0])) / Z
        total += math.log(p_pos / (p_pos + m * pn + eps))
        for i in range(1, m + 1):
            p_neg = math.exp(float(scores[b, i])) / Z
            total += math.log((m * pn) / (p_neg + m * pn + eps))
    return -total / bsz


# ----------------------------------------------------------------------------------------------- loss values
def test_nce_value_and_z_estimated_on_first_batch():
    loss = make_loss()
    set_known_memory(loss)
    f_s, f_t, index, cidx = make_batch()
    mem_s, mem_t = loss.memory_s.clone(), loss.memory_t.clone()
    assert float(loss.z_s) < 0 and float(loss.z_t) < 0
    out = loss(f_s, f_t, index=index, contrast_idx=cidx, target=torch.zeros(B))
    s_s, s_t, _, _ = reference_scores(loss, f_s, f_t, cidx, mem_s, mem_t)
    z_s = N * float(torch.exp(s_s).mean())
    z_t = N * float(torch.exp(s_t).mean())
    assert float(loss.z_s) == pytest.approx(z_s, rel=1e-5)
    assert float(loss.z_t) == pytest.approx(z_t, rel=1e-5)
    expected = reference_contrast_loss(s_s, z_s, N) + reference_contrast_loss(s_t, z_t, N)
    assert out.dim() == 0 and out.dtype == torch.float32
    assert out.item() == pytest.approx(expected, rel=1e-5)


def test_nce_has_the_references_eps_inside_each_log():
    """ContrastLoss: log(P / (P + m Pn + eps)) and log(m Pn / (P + m Pn + eps)) with eps = 1e-7. Chosen so that the
    eps matters: m Pn = 2 / 20000 = 1e-4 and P ~ 1e-6, so dropping the eps changes the value by ~1e-3 relative."""
    loss = make_loss(nce_k=2, num_data=20000)
    assert loss.eps == 1e-7
    scores = torch.tensor([[-2.0, -9.0, -12.0], [0.5, -11.0, -8.5]], dtype=torch.float64)
    z = torch.tensor(3.0e3, dtype=torch.float64)
    got = loss._nce(scores, z).item()
    assert got == pytest.approx(reference_contrast_loss(scores, 3.0e3, 20000, eps=1e-7), rel=1e-10)
    without = reference_contrast_loss(scores, 3.0e3, 20000, eps=0.0)
    assert abs(got - without) / abs(without) > 1e-4  # the test can tell the two apart
    assert make_loss(nce_k=2, num_data=20000, eps=0.0)._nce(scores, z).item() == pytest.approx(without, rel=1e-10)
    # finite where exp(s) / Z overflows a float
    big = torch.tensor([[800.0, 790.0, -5.0]], dtype=torch.float64)
    assert math.isfinite(loss._nce(big, z).item())


def test_nce_gradient_is_that_of_the_references_formula():
    """_nce's hand-written backward (sigmoid(u) - [positive]) / B against autograd through the reference's
    log(P / (P + c + eps)) and log(c / (P + c + eps)) written out with exp and log, in float64."""
    loss = make_loss(nce_k=3, num_data=40)
    z = torch.tensor(25.0, dtype=torch.float64)
    scores = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    ours = scores.clone().requires_grad_(True)
    loss._nce(ours, z).backward()
    ref = scores.clone().requires_grad_(True)
    p, c = ref.exp() / z, 3 / 40
    value = -(torch.log(p[:, 0] / (p[:, 0] + c + 1e-7)).sum() + torch.log(c / (p[:, 1:] + c + 1e-7)).sum()) / 5
    value.backward()
    torch.testing.assert_close(ours.grad, ref.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda s: loss._nce(s, z), (scores.clone().requires_grad_(True),))


def test_nce_uses_stored_z_and_keeps_it():
    loss = make_loss()
    set_known_memory(loss)
    with torch.no_grad():
        loss.z_s.fill_(3.5)
        loss.z_t.fill_(0.25)
    f_s, f_t, index, cidx = make_batch()
    s_s, s_t, _, _ = reference_scores(loss, f_s, f_t, cidx, loss.memory_s.clone(), loss.memory_t.clone())
    out = loss(f_s, f_t, index=index, contrast_idx=cidx)
    expected = reference_contrast_loss(s_s, 3.5, N) + reference_contrast_loss(s_t, 0.25, N)
    assert out.item() == pytest.approx(expected, rel=1e-5)
    assert float(loss.z_s) == 3.5 and float(loss.z_t) == 0.25
    # a second batch does not re-estimate Z
    loss(f_s * 2, f_t, index=index, contrast_idx=cidx)
    assert float(loss.z_s) == 3.5 and float(loss.z_t) == 0.25


def test_z_not_stored_in_eval_mode():
    loss = make_loss().eval()
    f_s, f_t, index, cidx = make_batch()
    out = loss(f_s, f_t, index=index, contrast_idx=cidx)
    assert torch.isfinite(out)
    assert float(loss.z_s) < 0 and float(loss.z_t) < 0


def test_infonce_value_is_cross_entropy_over_positive_and_negatives():
    loss = make_loss(objective="infonce")
    set_known_memory(loss)
    f_s, f_t, index, cidx = make_batch()
    s_s, s_t, _, _ = reference_scores(loss, f_s, f_t, cidx, loss.memory_s.clone(), loss.memory_t.clone())
    out = loss(f_s, f_t, index=index, contrast_idx=cidx)
    expected = 0.0
    for scores in (s_s, s_t):
        for b in range(B):
            row = [math.exp(float(v)) for v in scores[b]]
            expected += -math.log(row[0] / sum(row)) / B
    assert out.item() == pytest.approx(expected, rel=1e-5)
    assert float(loss.z_s) < 0  # InfoNCE needs no normalisation constant


# ----------------------------------------------------------------------------------------------- memory bank
def test_memory_initialisation_uniform_as_reference():
    loss = make_loss(num_data=400)
    bound = 1.0 / math.sqrt(D / 3.0)
    for mem in (loss.memory_s, loss.memory_t):
        assert mem.shape == (400, D) and mem.dtype == torch.float32
        assert float(mem.abs().max()) <= bound
        assert float(mem.min()) < -0.9 * bound and float(mem.max()) > 0.9 * bound
    assert not torch.equal(loss.memory_s, loss.memory_t)
    names = dict(loss.named_buffers())
    assert {"memory_s", "memory_t", "z_s", "z_t"} <= set(names)
    assert not any(n.startswith("memory") for n, _ in loss.named_parameters())


def test_memory_momentum_update_values():
    loss = make_loss()
    set_known_memory(loss)
    f_s, f_t, index, cidx = make_batch()
    old_s, old_t = loss.memory_s.clone(), loss.memory_t.clone()
    loss(f_s, f_t, index=index, contrast_idx=cidx)
    e_s, e_t = embed(loss.embed_s.linear, f_s), embed(loss.embed_t.linear, f_t)
    for bank, old, e in ((loss.memory_s, old_s, e_s), (loss.memory_t, old_t, e_t)):
        for row in range(N):
            if row in index.tolist():
                b = index.tolist().index(row)
                mixed = 0.5 * old[row] + 0.5 * e[b]
                want = mixed / math.sqrt(float((mixed ** 2).sum()))
            else:
                want = old[row]
            torch.testing.assert_close(bank[row], want.float(), rtol=1e-5, atol=1e-6)


def test_duplicate_index_updates_row_once_from_first_occurrence():
    loss = make_loss()
    set_known_memory(loss)
    f_s, f_t, _, cidx = make_batch()
    index = torch.tensor([4, 9, 4])
    old_t = loss.memory_t.clone()
    loss(f_s, f_t, index=index, contrast_idx=cidx)
    e_t = embed(loss.embed_t.linear, f_t)
    mixed = 0.5 * old_t[4] + 0.5 * e_t[0]
    torch.testing.assert_close(loss.memory_t[4], (mixed / mixed.norm()).float(), rtol=1e-5, atol=1e-6)


def test_memory_momentum_parameter_and_eval_mode():
    loss = make_loss(nce_m=0.9)
    set_known_memory(loss)
    f_s, f_t, index, cidx = make_batch()
    old_s = loss.memory_s.clone()
    loss.eval()
    loss(f_s, f_t, index=index, contrast_idx=cidx)
    assert torch.equal(loss.memory_s, old_s)  # eval: no update
    loss.train()
    loss(f_s, f_t, index=index, contrast_idx=cidx)
    e_s = embed(loss.embed_s.linear, f_s)
    mixed = 0.9 * old_s[index[1]] + 0.1 * e_s[1]
    torch.testing.assert_close(loss.memory_s[index[1]], mixed / mixed.norm(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("objective", ["nce", "infonce"])
def test_gradients_reach_student_and_both_heads_not_teacher(objective):
    loss = make_loss(objective=objective)
    f_s, f_t, index, cidx = make_batch()
    f_s.requires_grad_(True)
    f_t.requires_grad_(True)  # even if a caller forgets to detach, the teacher gets no gradient
    out = loss(f_s, f_t, index=index, contrast_idx=cidx)
    out.backward()
    assert f_s.grad is not None and float(f_s.grad.abs().sum()) > 0
    assert f_t.grad is None
    for head in (loss.embed_s, loss.embed_t):
        for p in head.parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0
    assert all(not b.requires_grad for b in loss.buffers())


def test_memory_update_does_not_change_the_current_gradient():
    f_s, f_t, index, cidx = make_batch()
    grads = []
    for train in (True, False):
        loss = make_loss()
        set_known_memory(loss)
        with torch.no_grad():
            loss.z_s.fill_(2.0)
            loss.z_t.fill_(2.0)
        loss.train(train)
        x = f_s.clone().requires_grad_(True)
        loss(x, f_t, index=index, contrast_idx=cidx).backward()
        grads.append((x.grad.clone(), loss.embed_t.linear.weight.grad.clone()))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


# ----------------------------------------------------------------------------------------------- misc behaviour
def test_fallback_draws_uniform_negatives_with_positive_first():
    f_s, f_t, index, _ = make_batch()
    loss_a, loss_b = make_loss(), make_loss()
    torch.manual_seed(123)
    drawn = torch.randint(0, N, (B, K + 1))
    drawn[:, 0] = index
    out_explicit = loss_a(f_s, f_t, index=index, contrast_idx=drawn)
    torch.manual_seed(123)
    out_fallback = loss_b(f_s, f_t, index=index, contrast_idx=None)
    assert out_fallback.item() == pytest.approx(out_explicit.item(), rel=1e-6)
    torch.testing.assert_close(loss_a.memory_s, loss_b.memory_s)


def test_feature_maps_and_one_item_lists_are_accepted():
    torch.manual_seed(0)
    loss = CRD(s_shapes=[torch.Size([2, 3, 2, 2])], t_shapes=torch.Size([2, 5]), num_data=6, feat_dim=4, nce_k=3)
    cidx = torch.tensor([[0, 2, 3, 4], [1, 5, 5, 2]])
    out = loss([torch.randn(2, 3, 2, 2)], torch.randn(2, 5), index=torch.tensor([0, 1]), contrast_idx=cidx)
    assert out.shape == () and torch.isfinite(out)


def test_autocast_cpu_computes_in_fp32():
    f_s, f_t, index, cidx = make_batch()
    ref = make_loss()
    want = ref(f_s, f_t, index=index, contrast_idx=cidx)
    loss = make_loss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(f_s.bfloat16(), f_t.bfloat16(), index=index, contrast_idx=cidx)
    assert got.dtype == torch.float32 and loss.memory_s.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=2e-2)


def test_state_dict_resume_is_exact():
    f_s, f_t, index, cidx = make_batch()
    a = make_loss()
    a(f_s, f_t, index=index, contrast_idx=cidx)  # sets Z and updates the memory
    b = make_loss(seed=99)
    b.load_state_dict(a.state_dict())
    assert float(b.z_s) == float(a.z_s) > 0
    out_a = a(f_s * 0.5, f_t, index=index, contrast_idx=cidx)
    out_b = b(f_s * 0.5, f_t, index=index, contrast_idx=cidx)
    assert out_a.item() == out_b.item()
    assert torch.equal(a.memory_t, b.memory_t)


def test_registry_build_drops_unused_context():
    loss = LOSSES.build(dict(type="CRD", nce_k=4, feat_dim=16), s_shapes=[torch.Size([2, 6])],
                        t_shapes=[torch.Size([2, 10])], num_classes=100, num_data=20)
    assert isinstance(loss, CRD) and loss.memory_s.shape == (20, 16) and loss.nce_k == 4
    assert loss.nce_t == 0.07 and loss.nce_m == 0.5 and loss.objective == "nce"


def test_defaults_match_reference():
    loss = CRD(s_shapes=[torch.Size([2, 4])], t_shapes=[torch.Size([2, 4])], num_data=30)
    assert (loss.feat_dim, loss.nce_k, loss.nce_t, loss.nce_m) == (128, 16384, 0.07, 0.5)


# ----------------------------------------------------------------------------------------------- errors
def test_constructor_errors():
    s, t = [torch.Size([2, 4])], [torch.Size([2, 4])]
    with pytest.raises(ValueError, match="num_data"):
        CRD(s_shapes=s, t_shapes=t)
    with pytest.raises(ValueError, match="s_shapes"):
        CRD(num_data=10)
    with pytest.raises(ValueError, match="single tensor"):
        CRD(s_shapes=s * 2, t_shapes=t, num_data=10)
    with pytest.raises(ValueError, match="objective"):
        CRD(s_shapes=s, t_shapes=t, num_data=10, objective="nceloss")
    with pytest.raises(ValueError, match="nce_m"):
        CRD(s_shapes=s, t_shapes=t, num_data=10, nce_m=1.0)


def test_forward_errors():
    loss = make_loss()
    f_s, f_t, index, cidx = make_batch()
    with pytest.raises(ValueError, match="nce_k=5"):
        loss(f_s, f_t, index=index, contrast_idx=cidx[:, :4])
    with pytest.raises(ValueError, match=r"\(B, nce_k\+1\)"):
        loss(f_s, f_t, index=index, contrast_idx=cidx[:2])
    with pytest.raises(ValueError, match="CRDSampleDataset"):
        loss(f_s, f_t, contrast_idx=cidx)
    with pytest.raises(ValueError, match="num_data=12"):
        loss(f_s, f_t, index=torch.tensor([3, 12, 0]), contrast_idx=cidx)
    with pytest.raises(ValueError, match="num_data=12"):
        bad = cidx.clone()
        bad[1, 3] = -1
        loss(f_s, f_t, index=index, contrast_idx=bad)
    with pytest.raises(ValueError, match="integer"):
        loss(f_s, f_t, index=index.float(), contrast_idx=cidx)
    with pytest.raises(ValueError, match="shape"):
        loss(torch.randn(B, DS + 1), f_t, index=index, contrast_idx=cidx)
    with pytest.raises(ValueError, match="batch sizes"):
        loss(f_s, f_t[:2], index=index, contrast_idx=cidx)
    with pytest.raises(ValueError, match="one student tensor"):
        loss([f_s, f_s], f_t, index=index, contrast_idx=cidx)
    # nothing was updated by the failed calls
    assert float(loss.z_s) < 0


# ----------------------------------------------------------------------------------------------- dataset wrapper
class ToyDataset(Dataset):
    """Dict samples with int targets (uneven classes, interleaved); class 3 has a single sample."""

    def __init__(self, labels=(0, 1, 2, 0, 2, 1, 0, 0, 2, 1, 3, 0, 2, 1, 0, 2), extra=True):
        self.targets = list(labels)
        self.extra = extra
        self.classes = ["a", "b", "c", "d"]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        out = {"image": torch.full((1, 2, 2), float(i)), "target": self.targets[i]}
        if self.extra:
            out["name"] = f"s{i}"
        return out


def test_wrapper_sample_format_and_exact_positive():
    inner = ToyDataset()
    ds = CRDSampleDataset(inner, nce_k=4)
    assert len(ds) == len(inner) and ds.targets == inner.targets
    assert ds.classes == inner.classes  # forwarded attribute
    s = ds[5]
    assert s["index"] == 5 and isinstance(s["index"], int)
    assert s["target"] == 1 and s["name"] == "s5" and float(s["image"][0, 0, 0]) == 5.0
    assert s["contrast_idx"].dtype == torch.long and s["contrast_idx"].shape == (5,)
    assert int(s["contrast_idx"][0]) == 5
    assert int(ds[-1]["index"]) == len(inner) - 1
    with pytest.raises(IndexError):
        ds[len(inner)]


def test_class_sampling_negatives_never_share_anchor_class():
    labels = ToyDataset().targets
    ds = CRDSampleDataset(ToyDataset(), nce_k=6, sampling="class")
    np.random.seed(0)
    for _ in range(5):
        for i in range(len(ds)):
            neg = ds[i]["contrast_idx"][1:].tolist()
            assert len(neg) == 6
            assert all(labels[j] != labels[i] for j in neg), (i, neg)
            assert len(set(neg)) == 6  # without replacement when enough candidates


def test_class_sampling_matches_reference_draws():
    """Same numpy seed -> the same negatives as RepDistiller's cls_negative lists + np.random.choice."""
    labels = ToyDataset().targets
    n_cls = max(labels) + 1
    cls_pos = [[i for i in range(len(labels)) if labels[i] == c] for c in range(n_cls)]
    cls_neg = [np.asarray([j for c2 in range(n_cls) if c2 != c for j in cls_pos[c2]]) for c in range(n_cls)]
    for k in (5, 14):  # 14 > candidates of class 0 (16 - 6 = 10): drawn with replacement there
        ds = CRDSampleDataset(ToyDataset(), nce_k=k)
        for i in range(len(labels)):
            np.random.seed(1000 + i)
            replace = k > len(cls_neg[labels[i]])
            want = np.hstack(([i], np.random.choice(cls_neg[labels[i]], k, replace=replace)))
            np.random.seed(1000 + i)
            got = ds[i]["contrast_idx"].numpy()
            np.testing.assert_array_equal(got, want)


def test_relax_positive_is_other_same_class_sample():
    labels = ToyDataset().targets
    ds = CRDSampleDataset(ToyDataset(), nce_k=3, mode="relax")
    np.random.seed(3)
    seen = set()
    for _ in range(20):
        for i in range(len(ds)):
            pos = int(ds[i]["contrast_idx"][0])
            assert labels[pos] == labels[i]
            if labels[i] == 3:  # singleton class: the sample itself
                assert pos == i
            else:
                assert pos != i
                seen.add((i, pos))
    # every other member of class 1 (indices 1, 5, 9, 13) shows up as positive of sample 1
    assert {p for a, p in seen if a == 1} == {5, 9, 13}


def test_any_sampling_excludes_only_the_anchor():
    labels = ToyDataset().targets
    n = len(labels)
    ds = CRDSampleDataset(ToyDataset(), nce_k=n - 1, sampling="any")
    np.random.seed(0)
    for i in range(n):
        neg = ds[i]["contrast_idx"][1:].tolist()
        assert sorted(neg) == [j for j in range(n) if j != i]  # K = N-1 without replacement: all others
    ds = CRDSampleDataset(ToyDataset(), nce_k=40, sampling="any")  # with replacement
    neg = ds[4]["contrast_idx"][1:].tolist()
    assert 4 not in neg and len(neg) == 40 and all(0 <= j < n for j in neg)
    assert any(labels[j] == labels[4] for j in neg)


def test_sampling_reproducible_under_np_seed():
    ds = CRDSampleDataset(ToyDataset(), nce_k=5, mode="relax")
    np.random.seed(7)
    a = [ds[i]["contrast_idx"] for i in range(len(ds))]
    np.random.seed(7)
    b = [ds[i]["contrast_idx"] for i in range(len(ds))]
    np.random.seed(8)
    c = [ds[i]["contrast_idx"] for i in range(len(ds))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_wrapper_from_config_dict_and_registry():
    ds = CRDSampleDataset(dict(type=ToyDataset, extra=False), nce_k=3)
    assert "name" not in ds[0] and len(ds) == 16
    ds2 = DATASETS.build(dict(type="CRDSampleDataset", dataset=dict(type=ToyDataset), nce_k=2, mode="relax"))
    assert isinstance(ds2, CRDSampleDataset) and ds2.mode == "relax" and ds2[0]["contrast_idx"].shape == (3,)


def test_wrapper_is_picklable_for_workers():
    ds = CRDSampleDataset(ToyDataset(), nce_k=3)
    ds2 = pickle.loads(pickle.dumps(ds))
    np.random.seed(0)
    a = ds[2]["contrast_idx"]
    np.random.seed(0)
    assert torch.equal(ds2[2]["contrast_idx"], a)


def test_wrapper_errors():
    class NoTargets(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"image": torch.zeros(1), "target": 0}

    class TupleSamples(ToyDataset):
        def __getitem__(self, i):
            return torch.zeros(1), self.targets[i]

    with pytest.raises(ValueError, match="targets"):
        CRDSampleDataset(NoTargets())
    with pytest.raises(ValueError, match="mode"):
        CRDSampleDataset(ToyDataset(), mode="exactly")
    with pytest.raises(ValueError, match="sampling"):
        CRDSampleDataset(ToyDataset(), sampling="other")
    with pytest.raises(ValueError, match="nce_k"):
        CRDSampleDataset(ToyDataset(), nce_k=0)
    with pytest.raises(ValueError, match="sampling='any'"):
        CRDSampleDataset(ToyDataset(labels=(2, 2, 2)))
    with pytest.raises(ValueError, match="one label per sample"):
        CRDSampleDataset(type("Short", (ToyDataset,), {"__len__": lambda self: 20})())
    with pytest.raises(TypeError, match="dict samples"):
        CRDSampleDataset(TupleSamples(), nce_k=2)[0]


def test_wrapper_batches_feed_the_loss():
    ds = CRDSampleDataset(ToyDataset(), nce_k=K)
    loader = DataLoader(ds, batch_size=4, shuffle=False)
    batch = next(iter(loader))
    assert batch["contrast_idx"].shape == (4, K + 1) and batch["index"].tolist() == [0, 1, 2, 3]
    torch.manual_seed(0)
    loss = CRD(s_shapes=[torch.Size([4, 4])], t_shapes=[torch.Size([4, 4])], num_data=len(ds), feat_dim=D, nce_k=K)
    out = loss(torch.randn(4, 4), torch.randn(4, 4), **batch)
    assert out.shape == () and torch.isfinite(out)


# ----------------------------------------------------------------------------------------------- devices
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_autocast():
    f_s, f_t, index, cidx = make_batch()
    cpu = make_loss()
    want = cpu(f_s, f_t, index=index, contrast_idx=cidx)
    gpu = make_loss().cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        got = gpu(f_s.cuda().half(), f_t.cuda().half(), index=index, contrast_idx=cidx)  # CPU indices are moved
    assert got.dtype == torch.float32 and got.device.type == "cuda"
    assert got.item() == pytest.approx(want.item(), rel=1e-2)
    torch.testing.assert_close(gpu.memory_s.cpu(), cpu.memory_s, rtol=1e-2, atol=1e-3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, result_dir, memory_dtype="float32"):
    import torch.distributed as dist
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loss = make_loss(memory_dtype=memory_dtype)  # same seed on every rank: same initial memory and heads
        f_s, f_t, index, cidx = make_batch(seed=10 + rank)  # different data per rank
        index = index + rank  # rank 0 rows {3,7,0}; rank 1 rows {4,8,1}
        loss(f_s, f_t, index=index, contrast_idx=cidx)
        torch.save({k: v for k, v in loss.state_dict().items() if not k.startswith("embed")},
                   os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("memory_dtype", ["float32", "float16"])
def test_distributed_memory_and_z_stay_identical_across_ranks(tmp_path, memory_dtype):
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path), memory_dtype), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for key in ("memory_s", "memory_t", "z_s", "z_t"):
        assert torch.equal(r0[key], r1[key]), key
    assert r0["memory_s"].dtype == getattr(torch, memory_dtype)
    # rows of both ranks' batches were updated (each rank applied the other's indices too), the others kept
    # their initial values
    init = make_loss(memory_dtype=memory_dtype)
    changed = (r0["memory_s"] != init.memory_s).any(1).nonzero().flatten().tolist()
    assert sorted(changed) == [0, 1, 3, 4, 7, 8]
    # Z is the mean of the two ranks' first-batch estimates
    zs = []
    for rank in (0, 1):
        one = make_loss(memory_dtype=memory_dtype)
        f_s, f_t, index, cidx = make_batch(seed=10 + rank)
        one(f_s, f_t, index=index + rank, contrast_idx=cidx)
        zs.append(float(one.z_s))
    assert float(r0["z_s"]) == pytest.approx(sum(zs) / 2, rel=1e-5)


def test_class_pair_dataset_adds_a_class_mates_image():
    from densekd.data.pairs import ClassPairDataset

    inner = ToyDataset()
    ds = ClassPairDataset(inner)
    assert len(ds) == len(inner) and ds.targets == inner.targets
    np.random.seed(0)
    partners = {i: set() for i in range(len(inner))}
    for _ in range(30):
        for i in range(len(inner)):
            s = ds[i]
            j = int(s["pair_image"][0, 0, 0])  # ToyDataset images hold their own index
            assert inner.targets[j] == inner.targets[i] and torch.equal(s["image"], inner[i]["image"])
            partners[i].add(j)
    for i, seen in partners.items():
        mates = {j for j, y in enumerate(inner.targets) if y == inner.targets[i] and j != i}
        assert seen == (mates or {i})  # every other class-mate drawn, never itself (unless alone)
    with pytest.raises(ValueError, match="ClassPairDataset needs the inner dataset to expose .targets"):
        ClassPairDataset(torch.utils.data.TensorDataset(torch.zeros(3)))


def test_unlabelled_frames_are_paired_with_themselves_and_contrasted_with_every_other_frame():
    class Frames(torch.utils.data.Dataset):  # paired modalities of one frame, no class labels
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"image": torch.full((3, 2, 2), float(i)), "depth": torch.full((1, 2, 2), float(i))}

    ds = CRDSampleDataset(Frames(), nce_k=5, mode="exact", sampling="any")
    np.random.seed(0)
    for i in range(6):
        item = ds[i]
        idx = item["contrast_idx"].tolist()
        assert item["index"] == i and idx[0] == i and sorted(idx[1:]) == [j for j in range(6) if j != i]
        assert torch.equal(item["depth"], torch.full((1, 2, 2), float(i)))
    with pytest.raises(ValueError, match="targets.*for unlabelled data such as cross-modal frame pairs use "
                                         "mode='exact', sampling='any'"):
        CRDSampleDataset(Frames(), nce_k=5, mode="exact", sampling="class")


@pytest.mark.parametrize("objective", ["nce", "infonce"])
def test_full_bank_scoring_equals_gathering_rows(objective):
    """scoring='full' (one product with the whole bank, scores gathered) gives the reference's row-gathering
    values, gradients and memory updates; 'auto' picks it when the bank is at most 8x the scored columns."""
    results = {}
    for scoring in ("gather", "full"):
        loss = make_loss(objective, scoring=scoring)
        f_s, f_t, index, contrast_idx = make_batch()
        f_s.requires_grad_(True)
        value = loss(f_s, f_t, index=index, contrast_idx=contrast_idx)
        value.backward()
        grads = [p.grad.clone() for p in loss.parameters()]
        results[scoring] = (value.detach(), f_s.grad.clone(), grads, loss.memory_s.clone(), loss.memory_t.clone())
    (v0, g0, p0, ms0, mt0), (v1, g1, p1, ms1, mt1) = results["gather"], results["full"]
    assert torch.allclose(v0, v1, rtol=1e-5, atol=1e-6)
    assert torch.allclose(g0, g1, rtol=1e-4, atol=1e-7)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(p0, p1))
    assert torch.allclose(ms0, ms1, atol=1e-6) and torch.allclose(mt0, mt1, atol=1e-6)
    assert make_loss(objective)._full_scoring(K + 1) == (N <= 8 * (K + 1))
    big = make_loss(objective, num_data=8 * (K + 1) + 1)
    assert not big._full_scoring(K + 1) and big._full_scoring(2 * (K + 1))
    with pytest.raises(ValueError, match="scoring must be"):
        make_loss(objective, scoring="rows")


def test_ddp_leaves_the_banks_to_crd(tmp_path):
    """DDP broadcasts rank 0's buffers every step; CRD's banks and Z are updated identically on every rank from
    all-gathered embeddings, so the trainer tells DDP to ignore them (the other buffers are still broadcast)."""
    import torch.distributed as dist

    from densekd.engine.distributed import rank_synchronised_buffers

    net = torch.nn.ModuleDict({"bn": torch.nn.BatchNorm1d(4), "terms": torch.nn.ModuleList([make_loss()])})
    names = rank_synchronised_buffers(net)
    assert names == ["terms.0.memory_s", "terms.0.memory_t", "terms.0.z_s", "terms.0.z_t"]
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(net, names)
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        broadcast = {id(b) for b in ddp.modules_buffers}
        assert id(net["bn"].running_mean) in broadcast
        assert not any(id(getattr(net["terms"][0], n)) in broadcast for n in ("memory_s", "memory_t", "z_s", "z_t"))
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------- ImageNet scale
def test_half_precision_memory_halves_the_banks_and_keeps_the_loss():
    f_s, f_t, index, cidx = make_batch()
    full, half = make_loss(), make_loss(memory_dtype="float16")
    assert half.memory_s.dtype == torch.float16 and half.memory_bytes() * 2 == full.memory_bytes() == 2 * N * D * 4
    torch.testing.assert_close(half.memory_s.float(), full.memory_s, rtol=0, atol=1e-3)
    a, b = full(f_s, f_t, index=index, contrast_idx=cidx), half(f_s, f_t, index=index, contrast_idx=cidx)
    assert a.dtype == b.dtype == torch.float32 and b.item() == pytest.approx(a.item(), rel=1e-3)
    torch.testing.assert_close(half.memory_s.float(), full.memory_s, rtol=0, atol=2e-3)  # the updated rows too
    assert torch.allclose(half.memory_t[index].float().norm(dim=1), torch.ones(B), atol=2e-3)
    with pytest.raises(ValueError, match="memory_dtype must be one of"):
        make_loss(memory_dtype="int8")


def test_imagenet_memory_cost_is_two_banks_of_num_data_by_feat_dim():
    # ImageNet: 2 x 1,281,167 x 128 values -> 1.31 GB in float32, 0.66 GB in float16 (documented in CRD)
    n = 1_281_167
    assert 2 * n * 128 * 4 == 1_311_915_008 and 2 * n * 128 * 2 == 655_957_504
    small = CRD(s_shapes=[torch.Size([2, 4])], t_shapes=[torch.Size([2, 4])], num_data=1000, feat_dim=128)
    assert small.memory_bytes() == 2 * 1000 * 128 * 4


def test_distinct_draws_are_distinct_uniform_and_exact_for_small_pools():
    from densekd.data.crd import EXACT_POOL, distinct_draws

    np.random.seed(0)
    want = np.random.choice(1000, 50, replace=False)
    np.random.seed(0)
    assert np.array_equal(distinct_draws(1000, 50), want)  # the reference's draws below EXACT_POOL
    pool = EXACT_POOL + 1001
    counts = np.zeros(pool)
    for _ in range(40):
        d = distinct_draws(pool, 20_000)
        assert len(np.unique(d)) == 20_000 and d.min() >= 0 and d.max() < pool
        counts[d] += 1
    p = 20_000 / pool  # every value drawn with probability k / pool per call
    assert counts.mean() == pytest.approx(40 * p, rel=1e-6)
    assert counts.std() == pytest.approx(math.sqrt(40 * p * (1 - p)), rel=0.05)


class _Labels(Dataset):
    def __init__(self, targets):
        self.targets = list(targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return {"image": torch.zeros(1), "target": self.targets[i]}


def test_negatives_from_a_large_pool_are_distinct_and_of_other_classes():
    from densekd.data.crd import EXACT_POOL

    n = EXACT_POOL + 50_000
    targets = np.arange(n) % 1000
    ds = CRDSampleDataset(_Labels(targets), nce_k=16384)
    np.random.seed(0)
    for i in (0, 12345, n - 1):
        idx = ds[i]["contrast_idx"].numpy()
        assert idx[0] == i and len(np.unique(idx[1:])) == 16384
        assert not (targets[idx[1:]] == targets[i]).any()
