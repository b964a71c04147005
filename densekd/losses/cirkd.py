"""Cross-image relational distillation for semantic segmentation (CIRKD).

Reference: Yang, Zhou, An, Jiang, Xu, Zhang, "Cross-Image Relational Knowledge Distillation for Semantic
Segmentation", CVPR 2022, and the authors' release winycg/CIRKD (``train_cirkd.py``,
``losses/cirkd_mini_batch.py``: ``CriterionMiniBatchCrossImagePair``, ``losses/cirkd_memory.py``:
``StudentSegContrast``). The paper's full objective is ``task + KD + mini-batch pixel-to-pixel + memory
pixel-to-pixel + memory pixel-to-region``; here the logit KD is :class:`~densekd.losses.dense.PixelWiseKD` and the
relational parts are two terms:

* :class:`CIRKDMiniBatch` -- pixel-to-pixel similarities between the images of the batch;
* :class:`CIRKDMemory` -- pixel-to-pixel and pixel-to-region similarities to a memory of teacher embeddings.

Both work on the features before the classifier (CIRKD's ``x_feat_after_aspp``; ``'decoder'`` of densekd's
segmentation models) and compute in fp32 with autocast off. The similarity matrices are never held whole: a
chunked autograd function (:class:`_RowKL`) computes and differentiates them a block of rows at a time.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from densekd.losses.base import RankSynchronised
from densekd.losses._utils import all_gather_rows, check_maps, distributed_world, require_shape_pair, single_tensor
from densekd.losses.dense import _labels_at
from densekd.registry import LOSSES

__all__ = ["CIRKDMiniBatch", "CIRKDMemory"]

_BLOCK = 1 << 24  # elements of one J x rows x M similarity block (64 MB in fp32)


# ----------------------------------------------------------------------------------------------- the kernel
def _row_blocks(n: int, rows: int):
    return ((r0, min(n, r0 + rows)) for r0 in range(0, n, rows))


class _RowKL(torch.autograd.Function):
    """``sum_{r, j} KL( softmax_m(alpha <b_r, bc_jm>) || softmax_m(alpha <a_r, ac_jm>) )``.

    ``a``: ``n x C`` student rows, ``ac``: ``J x M x C`` student columns (``J`` groups of ``M`` columns; every
    row has one softmax over the ``M`` columns of each group), ``b`` / ``bc``: the teacher's (``C'`` channels,
    no gradient). Memory: one ``J x rows x M`` block at a time (forward and backward); the backward recomputes the
    blocks and uses ``d/dz_s = alpha (softmax(z_s) - softmax(z_t))`` per row.
    """

    @staticmethod
    def forward(ctx, a, ac, b, bc, alpha: float, rows: int):
        total = a.new_zeros(())
        for r0, r1 in _row_blocks(a.shape[0], rows):
            zs = torch.matmul(a[r0:r1], ac.transpose(1, 2)).mul_(alpha)  # J x R x M
            zt = torch.matmul(b[r0:r1], bc.transpose(1, 2)).mul_(alpha)
            log_pt = F.log_softmax(zt, dim=-1)
            log_ps = F.log_softmax(zs, dim=-1)
            total = total + (log_pt.exp() * (log_pt - log_ps)).sum()
        ctx.save_for_backward(a, ac, b, bc)
        ctx.alpha, ctx.rows = alpha, rows
        return total

    @staticmethod
    def backward(ctx, grad_out):
        a, ac, b, bc = ctx.saved_tensors
        need_a, need_ac = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_a or need_ac):
            return None, None, None, None, None, None
        with torch.autocast(device_type=a.device.type, enabled=False):
            grad_out = grad_out.float()
            ga = torch.zeros_like(a) if need_a else None
            gac = torch.zeros_like(ac) if need_ac else None
            for r0, r1 in _row_blocks(a.shape[0], ctx.rows):
                zs = torch.matmul(a[r0:r1], ac.transpose(1, 2)).mul_(ctx.alpha)
                zt = torch.matmul(b[r0:r1], bc.transpose(1, 2)).mul_(ctx.alpha)
                g = (F.softmax(zs, dim=-1) - F.softmax(zt, dim=-1)).mul_(ctx.alpha * grad_out)  # J x R x M
                if need_a:
                    ga[r0:r1] += torch.matmul(g, ac).sum(0)
                if need_ac:
                    gac += torch.matmul(g.transpose(1, 2), a[r0:r1])
        return ga, gac, None, None, None, None


def _auto_rows(groups: int, cols: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        return chunk_size
    return max(1, _BLOCK // max(1, groups * cols))


class _GatherWithGrad(torch.autograd.Function):
    """All ranks' rows (rank order); the backward sums the gathered gradient over ranks and returns this rank's
    slice, so every rank's loss reaches the rows it was computed from."""

    @staticmethod
    def forward(ctx, x):
        out, sizes = all_gather_rows(x, return_sizes=True)
        ctx.start = sum(sizes[: dist.get_rank()])
        ctx.n = x.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start: ctx.start + ctx.n]


def _unit_pixels(x: torch.Tensor) -> torch.Tensor:
    """``B x C x H x W`` -> ``B x HW x C``, L2-normalised along C (``F.normalize``: eps 1e-12, differentiable)."""
    return F.normalize(x, p=2, dim=1).flatten(2).transpose(1, 2).contiguous()


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type if device.type in ("cuda", "cpu") else "cpu", enabled=False)


# ----------------------------------------------------------------------------------------------- mini-batch
@LOSSES.register()
class CIRKDMiniBatch(nn.Module):
    """CIRKD's mini-batch pixel-to-pixel distillation (Yang et al., CVPR 2022; the release's
    ``CriterionMiniBatchCrossImagePair``).

    Student and teacher feature maps (``B x Cs x H x W`` / ``B x Ct x H x W``; the widths may differ, each
    network's similarities stay within its own features, so no connector is needed -- the release has none for
    this term) are optionally average-pooled, L2-normalised per pixel (``F.normalize``, differentiated through
    the norm), and for every ordered pair of images ``(i, j)`` the pixel similarity matrix
    ``S_ij = F_i F_j^T`` (``N x N``, ``N = h*w``) is softened row by row with the temperature ``T`` over the
    pixels of image ``j``:

    ``KL_ij = (1/N) sum_{r=1..N} KL( softmax(S^t_ij[r] / T) || softmax(S^s_ij[r] / T) )``

    (``F.kl_div(..., reduction='batchmean')`` on the ``N x N`` matrix), and ``loss = (1/B^2) sum_{i,j} KL_ij``
    -- no ``T^2`` factor, as the release. The pairs include ``i == j``.

    Which images form the pairs: ``group_size=None`` (default) all images of the batch; under ``torchrun``
    (``gather=True``, default) all images of the GLOBAL batch: each process takes the rows of its own images
    against the columns of every process's images (gathered, with gradients returned to their process) and
    scales its sum by ``world / B_global^2``, so the mean over processes -- what DDP's gradient averaging
    optimises -- is exactly the single-process loss. ``gather=False`` keeps each process's share (the release:
    its ``concat_all_gather`` / ``GatherLayer`` lines are commented out). ``group_size=g`` splits the batch
    (each process's share under torchrun, no communication) into consecutive groups of ``g`` images and
    averages the groups' losses: the release trains 8 GPUs x 2 images, so ``group_size=2`` reproduces it with
    any number of processes whose share is even (configs/cityscapes/cirkd/*_cirkd.py set it).

    Pooling: ``pool='auto'`` (default) is the release's rule, a 4 x 4 average pooling (``ceil_mode``) when both
    ``h >= 256`` and ``w >= 256`` (never at 512 x 1024 crops and output stride 8: 64 x 128 maps are compared
    whole); ``pool=k`` always pools k x k; ``pool=None`` never. A student map of another resolution than the
    teacher's is bilinearly resized to it first (the release needs equal sizes).

    Memory: the ``N x N`` matrices are computed ``chunk_size`` rows at a time (default: blocks of about 16M
    elements), forward and backward, so a 64 x 128 map (8192 pixels) never holds an 8192 x 8192 matrix.
    Gradients reach the student's features only; the teacher is detached.

    Defaults: ``T=0.1`` (the release's ``--contrast-temperature 0.1``), weight 1 in the config
    (``--lambda-minibatch-pixel 1``), ``pool='auto'``, ``group_size=None``, ``gather=True``.

    Departures from the release: none in the value for ``group_size=2`` on 2-image shares (the release's exact
    setting); the all-image and global-batch forms (``group_size=None``) are the paper's "mini-batch" read
    literally; features are cast to fp32.
    """

    def __init__(self, T: float = 0.1, pool: str | int | None = "auto", group_size: int | None = None,
                 gather: bool = True, chunk_size: int | None = None):
        super().__init__()
        if not T > 0:
            raise ValueError(f"CIRKDMiniBatch: temperature T must be > 0, got {T}")
        if not (pool is None or pool == "auto" or (isinstance(pool, int) and not isinstance(pool, bool) and pool >= 1)):
            raise ValueError(f"CIRKDMiniBatch: pool must be 'auto' (the release: 4x4 average pooling for maps of "
                             f"at least 256 x 256), a positive kernel size or None, got {pool!r}")
        if group_size is not None and int(group_size) < 1:
            raise ValueError(f"CIRKDMiniBatch: group_size must be a positive number of images or None, got {group_size}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"CIRKDMiniBatch: chunk_size must be a positive number of rows or None, got {chunk_size}")
        self.T = float(T)
        self.pool = pool
        self.group_size = None if group_size is None else int(group_size)
        self.gather = bool(gather)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    def extra_repr(self) -> str:
        return f"T={self.T}, pool={self.pool!r}, group_size={self.group_size}, gather={self.gather}"

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is None:
            return x
        if self.pool == "auto":
            if x.shape[2] >= 256 and x.shape[3] >= 256:
                return F.avg_pool2d(x, 4, stride=4, padding=0, ceil_mode=True)
            return x
        return F.avg_pool2d(x, self.pool, stride=self.pool, padding=0, ceil_mode=True)

    def _pairs(self, s_rows: torch.Tensor, s_cols: torch.Tensor, t_rows: torch.Tensor, t_cols: torch.Tensor
               ) -> torch.Tensor:
        """``sum_{i in rows, j in cols} KL_ij`` for ``I x N x C`` rows and ``J x N x C`` columns."""
        n = s_rows.shape[1]
        rows = _auto_rows(s_cols.shape[0], s_cols.shape[1], self.chunk_size)
        total = _RowKL.apply(s_rows.reshape(-1, s_rows.shape[2]), s_cols, t_rows.reshape(-1, t_rows.shape[2]),
                             t_cols, 1.0 / self.T, rows)
        return total / n

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "CIRKDMiniBatch", "student", "feature map", "tap one layer, e.g. 'decoder'")
        t = single_tensor(teacher, "CIRKDMiniBatch", "teacher", "feature map", "tap one layer, e.g. 'decoder'")
        check_maps(s, t, "CIRKDMiniBatch")
        with _no_autocast(s.device):
            s, t = s.float(), t.detach().float()
            if s.shape[-2:] != t.shape[-2:]:
                s = F.interpolate(s, size=t.shape[-2:], mode="bilinear", align_corners=False)
            s, t = _unit_pixels(self._pool(s)), _unit_pixels(self._pool(t))  # B x N x C
            b = s.shape[0]
            if self.group_size is not None:
                losses = [self._pairs(s[g0:g0 + self.group_size], s[g0:g0 + self.group_size],
                                      t[g0:g0 + self.group_size], t[g0:g0 + self.group_size])
                          / min(self.group_size, b - g0) ** 2 for g0 in range(0, b, self.group_size)]
                return torch.stack(losses).mean()
            world = distributed_world()
            if world > 1 and self.gather:
                s_all = _GatherWithGrad.apply(s)
                t_all = all_gather_rows(t)
                return self._pairs(s, s_all, t, t_all) * (world / s_all.shape[0] ** 2)
            return self._pairs(s, s, t, t) / b ** 2


# ----------------------------------------------------------------------------------------------- memory
@LOSSES.register()
class CIRKDMemory(RankSynchronised, nn.Module):
    """CIRKD's memory-based pixel-to-pixel and pixel-to-region distillation (Yang et al., CVPR 2022; the
    release's ``StudentSegContrast``).

    Inputs: student features ``B x Cs x H x W``, teacher features ``B x Ct x H x W`` (the same tap as
    :class:`CIRKDMiniBatch`), ``extra['target']`` (``B x H' x W'`` labels, nearest-resized to ``H x W``; pixels
    labelled ``ignore_index`` or outside ``[0, num_classes)`` belong to no class).

    * Student embedding: a projection head ``1x1 conv (Cs -> Ct, no bias) - BatchNorm - ReLU - 1x1 conv
      (Ct -> Ct, no bias)`` (always, as the release, also for equal widths; its BatchNorm is the release's
      ``SyncBatchNorm`` when ``train.sync_bn=True`` under torchrun on CUDA), then L2-normalised per pixel
      (``F.normalize``). Teacher embedding: its features L2-normalised per pixel. A student map of another
      resolution is bilinearly resized to the teacher's after the head.
    * Memories (buffers, saved in checkpoints): ``teacher_pixel_queue`` (``K x pixel_memory_size x Ct``) and
      ``teacher_segment_queue`` (``K x region_memory_size x Ct``), ``K = num_classes``, initialised with
      L2-normalised Gaussian rows, and their per-class write pointers ``pixel_queue_ptr`` /
      ``segment_queue_ptr``.
    * Enqueue (training mode, BEFORE the loss of the step, as the release): the teacher embeddings and labels of
      the batch -- of the GLOBAL batch under torchrun, all-gathered in rank order, so every process writes the
      same rows -- image by image, and in each image class by class (ascending ids): the class's mean embedding,
      L2-normalised, goes to ``segment_queue[c, ptr]`` (ptr + 1 modulo the size); ``k = min(n_c,
      pixel_update_freq)`` of its pixel embeddings, drawn at random, go to ``pixel_queue[c, ptr:ptr+k]``, or to
      the last ``k`` slots with the pointer reset to 0 when ``ptr + k >= pixel_memory_size`` (the release's rule).
    * Contrast: ``p = pixel_contrast_size // K + 1`` memory slots drawn at random (one draw, the same slots for
      every class) from the pixel memory, ``q = region_contrast_size // K + 1`` from the region memory; the
      ``K*p`` (``K*q``) rows form ``X``. For each labelled pixel of the batch, ``z = <e, X> / T`` for the
      student and teacher embeddings, and ``KL( softmax(z_t / T_kd) || softmax(z_s / T_kd) ) * T_kd^2``,
      summed over the labelled pixels and divided by their number (``batchmean``). The memory is detached.
    * ``loss = pixel_weight * KL_pixel + region_weight * KL_region``.

    Random draws come from a generator of this loss seeded with ``(seed, steps)`` (``steps``, a buffer, counts
    the training calls), never from the global RNG: every process draws the same (so the memories stay
    identical across ranks), and a resumed run draws what an uninterrupted one would.

    Defaults (the release's ``train_cirkd.py``): ``pixel_memory_size=20000``, ``region_memory_size=2000``
    per class, ``pixel_contrast_size=4096``, ``region_contrast_size=1024`` (i.e. 216 and 54 slots per class for
    19 classes), ``T=0.1`` (``--contrast-temperature``), ``kd_T=1.0`` (``--contrast-kd-temperature``),
    ``pixel_update_freq=16``, ``ignore_index=255`` (the release's datasets write -1), ``pixel_weight=1``,
    ``region_weight=1`` with term weight 0.1 in the config (``--lambda-memory-pixel 0.1``,
    ``--lambda-memory-region 0.1``). Memory cost: ``K * (20000 + 2000) * Ct`` floats (0.86 GB for 19 classes and
    a 512-channel teacher), in every checkpoint too.

    Departures from the release, exactly:

    * ``pixel_sampling='class'`` (default) enqueues ``k`` random pixels OF the class; the release indexes the
      image's pixels with ``randperm(n_c)[:k]`` directly (``this_feat[:, perm[:K]]`` instead of
      ``this_feat[:, idxs[perm[:K]]]``), i.e. it enqueues pixels among the image's first ``n_c`` in raster order,
      mostly of other classes: ``pixel_sampling='release'`` reproduces that.
    * Under torchrun the sum is divided by the labelled pixels of the global batch over the number of processes,
      so the mean over processes is the single-process ``batchmean`` (the release divides by each GPU's count).
    * The draws come from the loss's own generator (the release uses the global RNG of each process; its
      memories can diverge between GPUs, which DDP's buffer broadcast from rank 0 then overwrites).
    * No labelled pixel in the batch: 0 (connected to the head); the release returns the same. Labels outside
      ``[0, num_classes)`` are ignored (the release would index past its memory). Computed in fp32.
    """

    # enqueued from the all-gathered batch with the same draws on every rank (below): DDP need not broadcast them
    rank_synchronised_buffers = ("teacher_pixel_queue", "pixel_queue_ptr", "teacher_segment_queue",
                                 "segment_queue_ptr", "steps")

    SAMPLING = ("class", "release")

    def __init__(self, s_shapes: Sequence[torch.Size] | None = None, t_shapes: Sequence[torch.Size] | None = None,
                 num_classes: int | None = None, pixel_memory_size: int = 20000, region_memory_size: int = 2000,
                 pixel_contrast_size: int = 4096, region_contrast_size: int = 1024, T: float = 0.1,
                 kd_T: float = 1.0, pixel_update_freq: int = 16, ignore_index: int = 255, pixel_weight: float = 1.0,
                 region_weight: float = 1.0, pixel_sampling: str = "class", seed: int = 0,
                 chunk_size: int | None = None):
        super().__init__()
        s_list, t_list = require_shape_pair(s_shapes, t_shapes, "CIRKDMemory")
        if len(s_list) != 1:
            raise ValueError(f"CIRKDMemory works on one feature map per network (e.g. student='decoder', "
                             f"teacher='decoder'); got {len(s_list)} taps")
        s_shape, t_shape = s_list[0], t_list[0]
        if num_classes is None or int(num_classes) < 1:
            raise ValueError(f"CIRKDMemory needs num_classes (one memory per class; the distiller passes the "
                             f"dataset's class count), got {num_classes!r}")
        for name, v in (("pixel_memory_size", pixel_memory_size), ("region_memory_size", region_memory_size),
                        ("pixel_contrast_size", pixel_contrast_size), ("region_contrast_size", region_contrast_size),
                        ("pixel_update_freq", pixel_update_freq)):
            if int(v) < 1:
                raise ValueError(f"CIRKDMemory: {name} must be >= 1, got {v}")
        if not T > 0 or not kd_T > 0:
            raise ValueError(f"CIRKDMemory: temperatures must be > 0, got T={T}, kd_T={kd_T}")
        if pixel_sampling not in self.SAMPLING:
            raise ValueError(f"CIRKDMemory: pixel_sampling must be 'class' (random pixels of the class) or 'release' "
                             f"(the release's indexing, see the docstring), got {pixel_sampling!r}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"CIRKDMemory: chunk_size must be a positive number of rows or None, got {chunk_size}")
        self.s_channels, self.dim = int(s_shape[1]), int(t_shape[1])
        self.num_classes = int(num_classes)
        self.pixel_memory_size, self.region_memory_size = int(pixel_memory_size), int(region_memory_size)
        self.pixel_contrast_size, self.region_contrast_size = int(pixel_contrast_size), int(region_contrast_size)
        self.T, self.kd_T = float(T), float(kd_T)
        self.pixel_update_freq = int(pixel_update_freq)
        self.ignore_index = int(ignore_index)
        self.pixel_weight, self.region_weight = float(pixel_weight), float(region_weight)
        self.pixel_sampling = pixel_sampling
        self.seed = int(seed)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

        self.project_head = nn.Sequential(
            nn.Conv2d(self.s_channels, self.dim, 1, bias=False), nn.BatchNorm2d(self.dim), nn.ReLU(inplace=True),
            nn.Conv2d(self.dim, self.dim, 1, bias=False))
        g = torch.Generator().manual_seed(self.seed)
        k = self.num_classes
        self.register_buffer("teacher_pixel_queue", F.normalize(
            torch.randn(k, self.pixel_memory_size, self.dim, generator=g), p=2, dim=2))
        self.register_buffer("pixel_queue_ptr", torch.zeros(k, dtype=torch.long))
        self.register_buffer("teacher_segment_queue", F.normalize(
            torch.randn(k, self.region_memory_size, self.dim, generator=g), p=2, dim=2))
        self.register_buffer("segment_queue_ptr", torch.zeros(k, dtype=torch.long))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, dim={self.dim}, pixel_memory_size={self.pixel_memory_size}, "
                f"region_memory_size={self.region_memory_size}, T={self.T}, kd_T={self.kd_T}, "
                f"pixel_sampling={self.pixel_sampling!r}")

    @property
    def per_class_contrast(self) -> tuple[int, int]:
        """Slots drawn per class from the pixel and the region memory (the release's ``size // K + 1``)."""
        return (self.pixel_contrast_size // self.num_classes + 1, self.region_contrast_size // self.num_classes + 1)

    def generator(self) -> torch.Generator:
        """The generator of this step's draws: seeded with ``(seed, steps)``."""
        return torch.Generator().manual_seed((self.seed << 32) + int(self.steps))

    # -- memory -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def enqueue(self, t: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> None:
        """Write a batch of teacher embeddings (``B x N x D``, unit rows) with their labels (``B x N``, ``-1`` for
        pixels of no class) into the memories, image by image and class by class (see the class docstring)."""
        if distributed_world() > 1:
            t, labels = all_gather_rows(t), all_gather_rows(labels)
        b, n, d = t.shape
        k, big_p, big_r = self.num_classes, self.pixel_memory_size, self.region_memory_size
        lab = torch.where(labels >= 0, labels, torch.full_like(labels, k))  # k = no class
        onehot = F.one_hot(lab, k + 1).to(t.dtype)  # B x N x (K+1)
        counts = onehot.sum(1)  # B x (K+1)
        means = F.normalize(torch.bmm(onehot.transpose(1, 2), t) / counts.clamp(min=1)[..., None], p=2, dim=2)
        order = torch.argsort(lab, dim=1, stable=True)  # pixels grouped by class (ascending), raster order within
        counts_cpu = counts[:, :k].long().cpu().tolist()
        seg_ptr, pix_ptr = self.segment_queue_ptr.tolist(), self.pixel_queue_ptr.tolist()
        region_writes: dict[int, int] = {}  # flat slot c * R + s -> row of means (b * (K+1) + c); last write wins
        pixel_slots: list[int] = []
        pixel_src: list[int] = []  # flat position into ``order`` ('class') or into the pixels ('release')
        for i in range(b):
            offset = 0
            for c in range(k):
                m = counts_cpu[i][c]
                if m == 0:
                    continue
                region_writes[c * big_r + seg_ptr[c]] = i * (k + 1) + c
                seg_ptr[c] = (seg_ptr[c] + 1) % big_r
                q = min(m, self.pixel_update_freq)
                perm = torch.randperm(m, generator=gen)[:q].tolist()
                src = [i * n + offset + j for j in perm] if self.pixel_sampling == "class" else [i * n + j for j in perm]
                ptr = pix_ptr[c]
                if ptr + q >= big_p:
                    slots = range(big_p - q, big_p)
                    pix_ptr[c] = 0
                else:
                    slots = range(ptr, ptr + q)
                    pix_ptr[c] = (ptr + q) % big_p
                pixel_slots += [c * big_p + s for s in slots]
                pixel_src += src
                offset += m
        if region_writes:
            slots = torch.tensor(list(region_writes), dtype=torch.long, device=t.device)
            rows = torch.tensor(list(region_writes.values()), dtype=torch.long, device=t.device)
            self.teacher_segment_queue.view(-1, d)[slots] = means.reshape(-1, d)[rows].to(self.teacher_segment_queue.dtype)
        if pixel_slots:
            last = dict(zip(pixel_slots, pixel_src))  # a slot written twice in one step keeps its last write
            slots = torch.tensor(list(last), dtype=torch.long, device=t.device)
            src = torch.tensor(list(last.values()), dtype=torch.long, device=t.device)
            if self.pixel_sampling == "class":
                src = (src // n) * n + order.reshape(-1)[src]
            feats = F.normalize(t.reshape(-1, d)[src], p=2, dim=1)
            self.teacher_pixel_queue.view(-1, d)[slots] = feats.to(self.teacher_pixel_queue.dtype)
        self.segment_queue_ptr.copy_(torch.tensor(seg_ptr, dtype=torch.long))
        self.pixel_queue_ptr.copy_(torch.tensor(pix_ptr, dtype=torch.long))

    def contrast_rows(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's contrast sets: ``K*p x D`` pixel-memory rows and ``K*q x D`` region-memory rows (class-major,
        the same slots for every class)."""
        p, q = self.per_class_contrast
        pix = torch.randperm(self.pixel_memory_size, generator=gen)[:p].to(self.teacher_pixel_queue.device)
        reg = torch.randperm(self.region_memory_size, generator=gen)[:q].to(self.teacher_segment_queue.device)
        return (self.teacher_pixel_queue[:, pix].reshape(-1, self.dim).detach().float(),
                self.teacher_segment_queue[:, reg].reshape(-1, self.dim).detach().float())

    # -- loss ---------------------------------------------------------------------------------------------
    def _kl(self, s: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``sum over rows of KL(softmax(<t, x> / (T T_kd)) || softmax(<s, x> / (T T_kd))) * T_kd^2``."""
        rows = _auto_rows(1, x.shape[0], self.chunk_size)
        return _RowKL.apply(s, x[None], t, x[None], 1.0 / (self.T * self.kd_T), rows) * self.kd_T ** 2

    def forward(self, student: Any, teacher: Any, target: torch.Tensor | None = None, **extra: Any) -> torch.Tensor:
        s = single_tensor(student, "CIRKDMemory", "student", "feature map", "tap one layer, e.g. 'decoder'")
        t = single_tensor(teacher, "CIRKDMemory", "teacher", "feature map", "tap one layer, e.g. 'decoder'")
        check_maps(s, t, "CIRKDMemory")
        if s.shape[1] != self.s_channels or t.shape[1] != self.dim:
            raise ValueError(f"CIRKDMemory was built for {self.s_channels} student / {self.dim} teacher channels but "
                             f"got {tuple(s.shape)} and {tuple(t.shape)}; tap the layers of the probe forward")
        if target is None:
            raise ValueError("CIRKDMemory needs the segmentation labels: pass target=<B x H x W label map> (the "
                             "distiller forwards the batch's 'target')")
        with _no_autocast(s.device):
            e_s = self.project_head(s.float())
            if e_s.shape[-2:] != t.shape[-2:]:
                e_s = F.interpolate(e_s, size=t.shape[-2:], mode="bilinear", align_corners=False)
            e_s, e_t = _unit_pixels(e_s), _unit_pixels(t.detach().float())  # B x N x D
            b, n, d = e_t.shape
            labels = _labels_at(target.to(t.device), t.shape[-2:], b, "CIRKDMemory").reshape(b, n)
            valid = (labels != self.ignore_index) & (labels >= 0) & (labels < self.num_classes)
            labels = torch.where(valid, labels, torch.full_like(labels, -1))
            gen = self.generator()
            if self.training:
                self.enqueue(e_t, labels, gen)
                self.steps += 1
            x_pix, x_reg = self.contrast_rows(gen)
            s_rows, t_rows = e_s[valid], e_t[valid]  # n_valid x D
            n_valid = s_rows.new_tensor(float(s_rows.shape[0]))
            world = distributed_world()
            if world > 1:
                dist.all_reduce(n_valid)
                n_valid = n_valid / world
            zero = 0.0 * (e_s ** 2).mean()  # keeps the head in the graph when nothing is labelled
            if float(n_valid) == 0.0:
                return zero
            total = (self.pixel_weight * self._kl(s_rows, t_rows, x_pix)
                     + self.region_weight * self._kl(s_rows, t_rows, x_reg))
            return total / n_valid + zero
