"""CIRKD (Yang et al., CVPR 2022): both terms against their equations written out here, the memories' enqueue
rules, ignore pixels, gradients, exact resume, and identical memories across two gloo processes."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch

from densekd.losses import CIRKDMemory, CIRKDMiniBatch
from densekd.registry import LOSSES


# ----------------------------------------------------------------------------------------------- references
def unit(x):
    """Per-pixel L2 normalisation of B x C x H x W, written out."""
    return x / torch.sqrt((x ** 2).sum(1, keepdim=True)).clamp_min(1e-12)


def row_kl(zt, zs):
    """KL(softmax(zt) || softmax(zs)) of two 1-D score vectors, from the definitions."""
    pt = torch.exp(zt - zt.max()) / torch.exp(zt - zt.max()).sum()
    log_ps = zs - zs.max() - torch.log(torch.exp(zs - zs.max()).sum())
    return (pt * (torch.log(pt) - log_ps)).sum()


def ref_minibatch(s, t, T, groups):
    """(1/|groups|) sum_g (1/|g|^2) sum_{i,j in g} (1/N) sum_r KL(softmax(St_ij[r]/T) || softmax(Ss_ij[r]/T))."""
    fs, ft = unit(s), unit(t)
    total = 0.0
    for g in groups:
        acc = 0.0
        for i in g:
            for j in g:
                a_i, a_j = fs[i].reshape(fs.shape[1], -1), fs[j].reshape(fs.shape[1], -1)
                b_i, b_j = ft[i].reshape(ft.shape[1], -1), ft[j].reshape(ft.shape[1], -1)
                n = a_i.shape[1]
                ss = torch.einsum("cr,cm->rm", a_i, a_j)
                st = torch.einsum("cr,cm->rm", b_i, b_j)
                acc = acc + sum(row_kl(st[r] / T, ss[r] / T) for r in range(n)) / n
        total = total + acc / len(g) ** 2
    return total / len(groups)


def ref_memory(loss, s, t, target_small, ignore=255):
    """The memory loss from its equation: every memory row contrasted (the tests make the draws take them all)."""
    head = loss.project_head
    e_s, e_t = unit(head(s)), unit(t)
    rows = {"pixel": loss.teacher_pixel_queue.reshape(-1, loss.dim), "region": loss.teacher_segment_queue.reshape(-1, loss.dim)}
    weights = {"pixel": loss.pixel_weight, "region": loss.region_weight}
    total, count = 0.0, 0
    b, _, h, w = t.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                lab = int(target_small[i, y, x])
                if lab == ignore or not 0 <= lab < loss.num_classes:
                    continue
                count += 1
                for kind, mem in rows.items():
                    zs = torch.einsum("d,md->m", e_s[i, :, y, x], mem) / loss.T
                    zt = torch.einsum("d,md->m", e_t[i, :, y, x], mem) / loss.T
                    total = total + weights[kind] * row_kl(zt / loss.kd_T, zs / loss.kd_T) * loss.kd_T ** 2
    return total / count


def memory(s_shape, t_shape, k=3, p=6, r=4, take_all=True, **kw):
    """A small CIRKDMemory; ``take_all`` makes each step's contrast draw every memory slot."""
    if take_all:
        kw.setdefault("pixel_contrast_size", k * p)
        kw.setdefault("region_contrast_size", k * r)
    return CIRKDMemory([s_shape], [t_shape], num_classes=k, pixel_memory_size=p, region_memory_size=r, **kw)


# ----------------------------------------------------------------------------------------------- mini-batch
@pytest.mark.parametrize("group_size,chunk", [(None, None), (None, 3), (2, 5), (3, 7)])
def test_minibatch_matches_the_pairwise_equation(group_size, chunk):
    torch.manual_seed(0)
    s, t = torch.randn(5, 4, 3, 4, dtype=torch.float64), torch.randn(5, 6, 3, 4, dtype=torch.float64)
    loss = CIRKDMiniBatch(T=0.1, group_size=group_size, chunk_size=chunk)
    groups = [range(5)] if group_size is None else [range(g, min(g + group_size, 5)) for g in range(0, 5, group_size)]
    want = ref_minibatch(s.float(), t.float(), 0.1, groups)
    assert loss(s.float(), t.float()).item() == pytest.approx(float(want), rel=1e-5)


def test_minibatch_gradients_match_autograd_reach_student_not_teacher():
    torch.manual_seed(1)
    s = torch.randn(3, 4, 2, 3, requires_grad=True)
    t = torch.randn(3, 5, 2, 3, requires_grad=True)
    got = CIRKDMiniBatch(T=0.5, chunk_size=2)(s, t)
    got.backward()
    s2 = s.detach().clone().requires_grad_(True)
    ref_minibatch(s2, t.detach(), 0.5, [range(3)]).backward()
    torch.testing.assert_close(s.grad, s2.grad, rtol=1e-4, atol=1e-6)
    assert s.grad.abs().sum() > 0 and t.grad is None


def test_minibatch_pooling_rule_and_resolution():
    torch.manual_seed(2)
    small = CIRKDMiniBatch(pool="auto")
    s, t = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    assert small(s, t).item() == pytest.approx(float(ref_minibatch(s, t, 0.1, [range(2)])), rel=1e-5)  # no pooling
    pooled = CIRKDMiniBatch(pool=2)
    want = ref_minibatch(torch.nn.functional.avg_pool2d(s, 2), torch.nn.functional.avg_pool2d(t, 2), 0.1, [range(2)])
    assert pooled(s, t).item() == pytest.approx(float(want), rel=1e-5)
    # the release pools 4 x 4 from 256 x 256 maps on: the pooled maps then compare 64 x 64 pixels
    big_s, big_t = torch.randn(1, 2, 256, 256), torch.randn(1, 2, 256, 256)
    pool4 = CIRKDMiniBatch(pool=4)(big_s, big_t)
    assert CIRKDMiniBatch(pool="auto")(big_s, big_t).item() == pytest.approx(pool4.item(), rel=1e-6)
    # a student map of another size is resized (bilinear) to the teacher's
    s_half = torch.randn(2, 3, 4, 4)
    up = torch.nn.functional.interpolate(s_half, size=(8, 8), mode="bilinear", align_corners=False)
    assert small(s_half, t).item() == pytest.approx(small(up, t).item(), rel=1e-6)


def test_minibatch_identical_networks_give_zero_and_errors():
    x = torch.randn(2, 3, 4, 4)
    assert CIRKDMiniBatch()(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        CIRKDMiniBatch(T=0)
    with pytest.raises(ValueError, match="pool"):
        CIRKDMiniBatch(pool="max")
    with pytest.raises(ValueError, match="group_size"):
        CIRKDMiniBatch(group_size=0)
    with pytest.raises(ValueError, match="ONE student"):
        CIRKDMiniBatch()([x, x], x)
    with pytest.raises(ValueError, match="B x C x H x W"):
        CIRKDMiniBatch()(x.flatten(1), x)


def test_minibatch_is_fp32_under_autocast():
    s, t = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    want = CIRKDMiniBatch()(s, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = CIRKDMiniBatch()(s.bfloat16(), t.bfloat16())
    assert got.dtype == torch.float32 and got.item() == pytest.approx(want.item(), rel=5e-2)


# ----------------------------------------------------------------------------------------------- memory: value
def labelled_batch(seed=3, b=2, h=4, w=5, k=3, cs=4, ct=6):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, cs, h, w, generator=g)
    t = torch.randn(b, ct, h, w, generator=g)
    small = torch.randint(0, k, (b, h, w), generator=g)
    small[0, 0, :2] = 255
    if b > 1:
        small[1, 3, 4] = 255
    target = small.repeat_interleave(2, 1).repeat_interleave(2, 2)  # 2x resolution; nearest picks [2y, 2x]
    return s, t, small, target


def test_memory_loss_matches_its_equation_in_eval_mode():
    s, t, small, target = labelled_batch()
    loss = memory(s.shape, t.shape, T=0.1, kd_T=2.0, pixel_weight=0.3, region_weight=0.7).eval()
    before = loss.teacher_pixel_queue.clone()
    got = loss(s, t, target=target)
    with torch.no_grad():
        want = ref_memory(loss, s, t, small)
    assert got.item() == pytest.approx(float(want), rel=1e-5)
    assert torch.equal(loss.teacher_pixel_queue, before) and int(loss.steps) == 0  # eval: nothing enqueued


def test_memory_loss_in_training_uses_the_memory_after_this_steps_enqueue():
    s, t, small, target = labelled_batch(seed=4)
    loss = memory(s.shape, t.shape)
    loss.project_head[1].eval()  # BatchNorm on running statistics, so the reference head gives the same output
    got = loss(s, t, target=target)
    assert int(loss.steps) == 1
    with torch.no_grad():
        want = ref_memory(loss, s, t, small)
    assert got.item() == pytest.approx(float(want), rel=1e-5)


def test_memory_ignores_255_pixels_and_an_all_ignored_batch_is_zero():
    s, t, small, target = labelled_batch(seed=5)
    loss = memory(s.shape, t.shape).eval()
    base = loss(s, t, target=target).item()
    s2, t2 = s.clone(), t.clone()
    s2[0, :, 0, :2] += 5.0  # features under ignore labels change: the loss does not
    t2[1, :, 3, 4] -= 3.0
    assert loss(s2, t2, target=target).item() == pytest.approx(base, rel=1e-6)
    out_of_range = target.clone()
    out_of_range[0] = 7  # a label >= num_classes counts as ignored
    ref = target.clone()
    ref[0] = 255
    assert loss(s, t, target=out_of_range).item() == pytest.approx(loss(s, t, target=ref).item(), rel=1e-6)
    train = memory(s.shape, t.shape)
    mem = (train.teacher_pixel_queue.clone(), train.teacher_segment_queue.clone())
    sr = s.clone().requires_grad_(True)
    zero = train(sr, t, target=torch.full_like(target, 255))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(sr.grad, torch.zeros_like(sr))
    assert all(p.grad is not None for p in train.project_head.parameters())
    assert torch.equal(train.teacher_pixel_queue, mem[0]) and torch.equal(train.teacher_segment_queue, mem[1])
    assert train.pixel_queue_ptr.tolist() == train.segment_queue_ptr.tolist() == [0, 0, 0]


def test_memory_gradients_reach_student_and_head_never_teacher_or_memory():
    s, t, _, target = labelled_batch(seed=6)
    s, t = s.requires_grad_(True), t.requires_grad_(True)
    loss = memory(s.shape, t.shape)
    loss(s, t, target=target).backward()
    assert s.grad.abs().sum() > 0 and t.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.project_head.parameters())
    assert not loss.teacher_pixel_queue.requires_grad and not loss.teacher_segment_queue.requires_grad


def test_memory_gradient_of_the_chunked_kernel_matches_autograd():
    s, t, small, target = labelled_batch(seed=7)
    loss = memory(s.shape, t.shape, chunk_size=3).eval()
    sr = s.clone().requires_grad_(True)
    loss(sr, t, target=target).backward()
    s2 = s.clone().requires_grad_(True)
    ref_memory(loss, s2, t, small).backward()
    assert s2.grad.abs().max() > 1e-3
    torch.testing.assert_close(sr.grad, s2.grad, rtol=1e-4, atol=2e-6)


# ----------------------------------------------------------------------------------------------- memory: queues
def embeddings(t):
    return unit(t).flatten(2).transpose(1, 2)  # B x N x D


def test_enqueue_writes_class_means_and_the_class_pixels_with_the_release_pointer_rules():
    s, t, small, target = labelled_batch(seed=8, k=3)
    loss = memory(s.shape, t.shape, k=3, p=50, r=4, pixel_update_freq=100)
    init_pix, init_reg = loss.teacher_pixel_queue.clone(), loss.teacher_segment_queue.clone()
    loss(s, t, target=target)
    e = embeddings(t)
    lab = small.flatten(1)
    for c in range(3):
        n_written, slot_r = 0, 0
        for i in range(2):
            members = e[i][lab[i] == c]
            if len(members) == 0:
                continue
            mean = members.mean(0)
            torch.testing.assert_close(loss.teacher_segment_queue[c, slot_r], mean / mean.norm(), rtol=1e-5, atol=1e-6)
            slot_r += 1
            got = loss.teacher_pixel_queue[c, n_written:n_written + len(members)]
            # the same rows in some random order
            key = lambda x: x[:, 0] * 1e3 + x[:, 1]  # noqa: E731
            torch.testing.assert_close(got[key(got).argsort()], members[key(members).argsort()], rtol=1e-5, atol=1e-6)
            n_written += len(members)
        assert int(loss.pixel_queue_ptr[c]) == n_written and int(loss.segment_queue_ptr[c]) == slot_r
        assert torch.equal(loss.teacher_pixel_queue[c, n_written:], init_pix[c, n_written:])
        assert torch.equal(loss.teacher_segment_queue[c, slot_r:], init_reg[c, slot_r:])
    ignored = e[0][lab[0] == 255]
    for row in ignored:  # no ignore pixel in any memory
        assert not torch.isclose(loss.teacher_pixel_queue.reshape(-1, loss.dim), row).all(1).any()


def test_pixel_memory_wraps_to_its_last_slots_and_a_slot_written_twice_keeps_the_last():
    t = torch.randn(2, 4, 1, 3)
    target = torch.zeros(2, 1, 3, dtype=torch.long)  # 3 pixels of class 0 per image
    loss = memory(t.shape, t.shape, k=1, p=5, r=1, pixel_update_freq=16)
    loss(torch.randn(2, 4, 1, 3), t, target=target)
    e = embeddings(t)
    rows = loss.teacher_pixel_queue[0]
    # image 0: ptr 0 -> slots 0..2, ptr 3; image 1: 3 + 3 >= 5 -> the last 3 slots (2..4), ptr 0
    key = lambda x: x.sum(1)  # noqa: E731
    torch.testing.assert_close(key(rows[2:]).sort().values, key(e[1]).sort().values)
    first_two = {round(v, 5) for v in key(rows[:2]).tolist()}
    assert first_two <= {round(v, 5) for v in key(e[0]).tolist()}
    assert int(loss.pixel_queue_ptr[0]) == 0
    # region memory of size 1: written by both images, image 1's mean stays
    mean = e[1].mean(0)
    torch.testing.assert_close(loss.teacher_segment_queue[0, 0], mean / mean.norm(), rtol=1e-5, atol=1e-6)
    assert int(loss.segment_queue_ptr[0]) == 0


def test_pixel_update_freq_caps_the_pixels_per_class_and_image():
    s, t, small, target = labelled_batch(seed=9)
    loss = memory(s.shape, t.shape, p=50, pixel_update_freq=2)
    loss(s, t, target=target)
    present = [sum(int((small[i] == c).any()) for i in range(2)) for c in range(3)]
    assert loss.pixel_queue_ptr.tolist() == [2 * n for n in present]


def test_release_pixel_sampling_takes_the_images_first_pixels_in_raster_order():
    t = torch.randn(1, 4, 2, 3)
    target = torch.tensor([[[1, 1, 0], [0, 0, 1]]])  # class 0: 3 pixels at raster 2, 3, 4; class 1 at 0, 1, 5
    loss = memory(t.shape, t.shape, k=2, p=10, r=2, pixel_update_freq=16, pixel_sampling="release")
    loss(torch.randn(1, 4, 2, 3), t, target=target)
    e = embeddings(t)[0]
    key = lambda x: x.sum(1)  # noqa: E731
    for c in (0, 1):  # both classes have 3 pixels: the release writes raster pixels 0, 1, 2 for each
        torch.testing.assert_close(key(loss.teacher_pixel_queue[c, :3]).sort().values, key(e[:3]).sort().values)
    cls = memory(t.shape, t.shape, k=2, p=10, r=2, pixel_update_freq=16)
    cls(torch.randn(1, 4, 2, 3), t, target=target)
    torch.testing.assert_close(key(cls.teacher_pixel_queue[0, :3]).sort().values, key(e[[2, 3, 4]]).sort().values)


def test_defaults_are_the_releases_and_registry_build():
    loss = LOSSES.build(dict(type="CIRKDMemory"), s_shapes=[torch.Size([2, 128, 8, 16])],
                        t_shapes=[torch.Size([2, 256, 8, 16])], num_classes=19, num_data=100)
    assert loss.teacher_pixel_queue.shape == (19, 20000, 256) and loss.teacher_segment_queue.shape == (19, 2000, 256)
    assert loss.per_class_contrast == (216, 54) and (loss.T, loss.kd_T) == (0.1, 1.0)
    assert loss.pixel_update_freq == 16 and loss.ignore_index == 255 and loss.pixel_sampling == "class"
    torch.testing.assert_close(loss.teacher_pixel_queue[3].norm(dim=1), torch.ones(20000))
    head = loss.project_head
    assert [type(m).__name__ for m in head] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert head[0].in_channels == 128 and head[0].out_channels == head[3].out_channels == 256 and head[0].bias is None
    mb = LOSSES.build(dict(type="CIRKDMiniBatch"), s_shapes=None, t_shapes=None, num_classes=19)
    assert (mb.T, mb.pool, mb.group_size, mb.gather) == (0.1, "auto", None, True)


def test_memory_constructor_and_forward_errors():
    shape = torch.Size([2, 4, 3, 3])
    with pytest.raises(ValueError, match="num_classes"):
        CIRKDMemory([shape], [shape])
    with pytest.raises(ValueError, match="s_shapes"):
        CIRKDMemory(None, None, num_classes=3)
    with pytest.raises(ValueError, match="one feature map"):
        CIRKDMemory([shape, shape], [shape, shape], num_classes=3)
    with pytest.raises(ValueError, match="pixel_sampling"):
        CIRKDMemory([shape], [shape], num_classes=3, pixel_sampling="random")
    with pytest.raises(ValueError, match="pixel_memory_size"):
        CIRKDMemory([shape], [shape], num_classes=3, pixel_memory_size=0)
    loss = CIRKDMemory([shape], [shape], num_classes=3, pixel_memory_size=4, region_memory_size=2)
    x = torch.randn(2, 4, 3, 3)
    with pytest.raises(ValueError, match="labels"):
        loss(x, x)
    with pytest.raises(ValueError, match="built for"):
        loss(torch.randn(2, 5, 3, 3), x, target=torch.zeros(2, 3, 3, dtype=torch.long))


# ----------------------------------------------------------------------------------------------- resume
def test_state_dict_resume_is_exact_and_independent_of_the_global_rng():
    s, t, _, target = labelled_batch(seed=10, b=3)
    batches = [(s + 0.1 * i, t - 0.2 * i, target.roll(i, 2)) for i in range(6)]
    torch.manual_seed(0)  # the projection head's initial weights
    full = memory(s.shape, t.shape, take_all=False, p=8, r=3, pixel_contrast_size=9, region_contrast_size=6)
    want = [full(*b[:2], target=b[2]).item() for b in batches]
    torch.manual_seed(0)
    part = memory(s.shape, t.shape, take_all=False, p=8, r=3, pixel_contrast_size=9, region_contrast_size=6)
    got = [part(*b[:2], target=b[2]).item() for b in batches[:3]]
    saved = {k: v.clone() for k, v in part.state_dict().items()}
    resumed = memory(s.shape, t.shape, take_all=False, p=8, r=3, pixel_contrast_size=9, region_contrast_size=6)
    torch.manual_seed(1234)  # the draws must not come from the global generator
    torch.randn(7)
    resumed.load_state_dict(saved)
    got += [resumed(*b[:2], target=b[2]).item() for b in batches[3:]]
    assert got == want
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert int(resumed.steps) == 6 and {"teacher_pixel_queue", "pixel_queue_ptr", "teacher_segment_queue",
                                        "segment_queue_ptr", "steps"} <= set(saved)


# ----------------------------------------------------------------------------------------------- two processes
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_batch(rank):
    s, t, _, target = labelled_batch(seed=20 + rank, b=2 - rank)  # rank 0: 2 images, rank 1: 1 image
    return s, t, target


def _worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        s, t, target = _rank_batch(rank)
        torch.manual_seed(0)  # the same projection head on every rank (DDP would broadcast it)
        loss = memory(s.shape, t.shape, take_all=False, p=8, r=3, pixel_contrast_size=9, region_contrast_size=6)
        torch.manual_seed(100 + rank)  # a different global RNG per rank: the memories must not depend on it
        loss.project_head[1].eval()
        values, grads = [], []
        for step in range(2):
            sr = (s + step).requires_grad_(True)
            value = loss(sr, t, target=target)
            value.backward()
            values.append(value.item())
            grads.append(sr.grad)
        sm = s.clone().requires_grad_(True)
        mb = CIRKDMiniBatch(T=0.1)(sm, t)
        mb.backward()
        torch.save({"state": loss.state_dict(), "values": values, "grads": grads, "mb": mb.item(), "mb_grad": sm.grad},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_keep_identical_memories_equal_to_one_process_on_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for key in ("teacher_pixel_queue", "teacher_segment_queue", "pixel_queue_ptr", "segment_queue_ptr", "steps"):
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    # one process on the concatenated batch (rank order) writes the same memories, and the mean of the ranks'
    # losses (what DDP's gradient averaging optimises) is its loss; each rank's gradient is world x its share
    (s0, t0, y0), (s1, t1, y1) = _rank_batch(0), _rank_batch(1)
    s, t, y = torch.cat([s0, s1]), torch.cat([t0, t1]), torch.cat([y0, y1])
    torch.manual_seed(0)
    one = memory(s.shape, t.shape, take_all=False, p=8, r=3, pixel_contrast_size=9, region_contrast_size=6)
    one.project_head[1].eval()
    for step in range(2):
        sr = (s + step).requires_grad_(True)
        value = one(sr, t, target=y)
        value.backward()
        assert value.item() == pytest.approx((r0["values"][step] + r1["values"][step]) / 2, rel=1e-5)
        torch.testing.assert_close(torch.cat([r0["grads"][step], r1["grads"][step]]) / 2, sr.grad, rtol=1e-4,
                                   atol=1e-7)
    for key in ("teacher_pixel_queue", "teacher_segment_queue", "pixel_queue_ptr", "segment_queue_ptr"):
        assert torch.equal(one.state_dict()[key], r0["state"][key]), key
    # the mini-batch term over the gathered global batch equals one process's on all 3 images
    sm = s.clone().requires_grad_(True)
    mb = CIRKDMiniBatch(T=0.1)(sm, t)
    mb.backward()
    assert mb.item() == pytest.approx((r0["mb"] + r1["mb"]) / 2, rel=1e-5)
    torch.testing.assert_close(torch.cat([r0["mb_grad"], r1["mb_grad"]]) / 2, sm.grad, rtol=1e-4, atol=1e-7)
    assert math.isfinite(mb.item())


# ----------------------------------------------------------------------------------------------- through the trainer
TINY_SEG = """
_base_ = ['{root}/configs/cityscapes/demo/_base_/synthetic.py', '{root}/configs/_base_/models/pspnet_r18.py']
model = dict(aux_head=False, encoder_depth=3, output_stride=8, psp_out_channels=32, psp_dropout=0.0)
teacher = dict(model=dict(type='seg_model', arch='PSPNet', encoder='resnet18', num_classes=19, encoder_depth=3,
                          output_stride=8, psp_out_channels=48, psp_dropout=0.0))
data = dict(train=dict(num_samples=8, image_size=(32, 64), crop_size=(32, 64)),
            val=dict(num_samples=4, image_size=(32, 64)), batch_size=4, val_batch_size=4)
train = dict(iters=6, eval_interval=6, checkpoint_interval=6, log_interval=1)
distill = [dict(type='CIRKDMiniBatch', student='decoder', teacher='decoder', group_size=2),
           dict(type='CIRKDMemory', student='decoder', teacher='decoder', weight=0.1, pixel_memory_size=40,
                region_memory_size=8, pixel_contrast_size=38, region_contrast_size=19)]
"""


def test_trainer_resume_continues_the_memories_exactly(tmp_path):
    from densekd.config import load_config
    from densekd.engine.trainer import Trainer
    from tests.conftest import ROOT

    cfg_path = tmp_path / "tiny_cirkd.py"
    cfg_path.write_text(TINY_SEG.format(root=ROOT))

    def run(work_dir, **kw):
        return Trainer(load_config(cfg_path), work_dir, device="cpu", synthetic=True, **kw).train()

    full = run(tmp_path / "full")
    run(tmp_path / "part", max_iters=3)
    resumed = run(tmp_path / "part", resume=True)
    assert resumed["final"] == full["final"] and resumed["iters"] == full["iters"] == 6
    a, b = (torch.load(tmp_path / d / "checkpoints" / "last.pth", weights_only=False) for d in ("full", "part"))
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    memory_keys = [k for k in a["strategy"]["distill"] if k.startswith("losses.CIRKDMemory.")]
    assert "losses.CIRKDMemory.teacher_pixel_queue" in memory_keys and int(a["strategy"]["distill"][
        "losses.CIRKDMemory.steps"]) == 6
    for k in memory_keys:
        assert torch.equal(a["strategy"]["distill"][k], b["strategy"]["distill"][k]), k


class _Pair(torch.nn.Module):
    """A student conv, a frozen teacher conv and both CIRKD terms, as the distiller combines them."""

    def __init__(self, group_size=None):
        super().__init__()
        torch.manual_seed(0)
        self.student = torch.nn.Conv2d(3, 4, 1)
        self.teacher = torch.nn.Conv2d(3, 6, 1).requires_grad_(False)
        self.mb = CIRKDMiniBatch(T=0.1, group_size=group_size)
        self.mem = memory(torch.Size([2, 4, 4, 5]), torch.Size([2, 6, 4, 5]), take_all=False, p=8, r=3,
                          pixel_contrast_size=9, region_contrast_size=6)
        self.mem.project_head[1].eval()  # running statistics: per-rank batch statistics would differ

    def forward(self, x, target):
        s, t = self.student(x), self.teacher(x)
        return self.mb(s, t) + 0.1 * self.mem(s, t, target=target)


def _ddp_batch(rank):
    g = torch.Generator().manual_seed(30 + rank)
    return torch.randn(2, 3, 4, 5, generator=g), torch.randint(0, 3, (2, 8, 10), generator=g)


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _Pair()
        ddp = DistributedDataParallel(model, broadcast_buffers=False)  # identical memories without DDP's broadcast
        x, y = _ddp_batch(rank)
        for _ in range(2):
            ddp.zero_grad()
            ddp(x, y).backward()
        torch.save({"grads": {k: p.grad for k, p in model.named_parameters() if p.grad is not None},
                    "state": {k: v for k, v in model.mem.state_dict().items() if "queue" in k or k == "steps"}},
                   os.path.join(out_dir, f"ddp{rank}.pt"))
    finally:
        dist.destroy_process_group()
    # A bare DDP module keeps its gloo group (and the group's worker threads) alive past destroy_process_group;
    # a worker still freeing a finished collective while Python finalises aborts the process ("terminate called
    # without an active exception") now and then. The results are saved: leave without finalising.
    os._exit(0)


def test_under_ddp_the_averaged_gradients_equal_one_process_and_the_memories_stay_identical(tmp_path):
    """The global-batch mini-batch term sends gradients back to the rows' processes inside DDP's backward."""
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"ddp{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    one = _Pair()
    (x0, y0), (x1, y1) = _ddp_batch(0), _ddp_batch(1)
    x, y = torch.cat([x0, x1]), torch.cat([y0, y1])
    for _ in range(2):
        one.zero_grad()
        one(x, y).backward()
    assert set(r0["grads"]) >= {"student.weight", "mem.project_head.0.weight"}
    for k, g in r0["grads"].items():
        torch.testing.assert_close(g, dict(one.named_parameters())[k].grad, rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(g, r1["grads"][k])
    for k, v in r0["state"].items():
        assert torch.equal(v, one.mem.state_dict()[k]), k
