"""Relation (instance-to-instance) distillation losses: SP, CC, RKD, PKT, IRG, IFM.

These losses compare *relations between the samples of a batch* (Gram matrices,
distances, angles, similarity distributions) rather than the features
themselves, so student and teacher widths may differ (except where noted).

Normalisations follow RepDistiller (HobbitLong/RepDistiller, ``distiller_zoo``)
so that its term weights reproduce the published recipe: SP 3000, CC 0.02,
RKD 1, PKT 30000. IRG has no RepDistiller version; it follows the authors'
released Caffe code (yufanLIU/IRG), see its docstring; IFM follows the authors'
release (passalis/pkth), see its docstring.

Every ``forward(student, teacher, **extra)`` takes one tensor or a list of
tensors (one per tap) for each side and returns the un-weighted scalar loss.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densekd.nn.connectors import LinearEmbed
from densekd.losses._utils import as_list, check_same_length, gram, shape_list, tap_lists
from densekd.registry import LOSSES

__all__ = ["SP", "CC", "RKD", "PKT", "IRG", "IFM", "cosine_conditional", "student_t_conditional", "jeffreys"]


# --------------------------------------------------------------------------- helpers
def _pairs(student: Any, teacher: Any, name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(student, detached teacher) per tap, checked by :func:`~densekd.losses._utils.tap_lists`."""
    return list(zip(*tap_lists(student, teacher, name)))


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------- SP
@LOSSES.register()
class SP(nn.Module):
    """Similarity-preserving KD. Tung & Mori, ICCV 2019, "Similarity-Preserving Knowledge Distillation".

    Per tap: flatten ``f`` to ``B x D``, ``G = f f^T`` (``B x B``), L2-normalise each
    row of ``G``, then ``||G_s - G_t||_F^2 / B^2``. Returns the SUM over taps
    (RepDistiller ``Similarity`` + ``sum(loss_group)``).

    Shapes: ``student``/``teacher``: a tensor or list of tensors ``B x ...``; widths
    and spatial sizes may differ between student and teacher, batch sizes must match.
    Defaults: no hyper-parameters; RepDistiller taps ``feats[-2]`` (last conv stage
    output) with term weight 3000.
    """

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        total = None
        for s, t in _pairs(student, teacher, "SP"):
            b = s.shape[0]
            fs, ft = _flat(s), _flat(t)
            g_s = F.normalize(gram(fs), p=2, dim=1)
            g_t = F.normalize(gram(ft), p=2, dim=1)
            loss = (g_s - g_t).pow(2).sum() / (b * b)
            total = loss if total is None else total + loss
        return total


# --------------------------------------------------------------------------- CC
@LOSSES.register()
class CC(nn.Module):
    """Correlation congruence. Peng et al., ICCV 2019, "Correlation Congruence for Knowledge Distillation".

    RepDistiller recipe (``train_student.py``, ``distill == 'correlation'``): the
    pooled features ``feats[-1]`` of student and teacher are each mapped by a
    learnable linear embedding to ``feat_dim=128`` (RepDistiller's ``LinearEmbed``:
    ``nn.Linear`` with NO L2 normalisation; both embeddings are trained with the
    student), then ``Correlation`` is applied:

        ``delta = |e_s - e_t|``;  ``loss = mean_i sum_d delta[i, d] * delta[i + 1, d]``
        (``i = 0 .. B-2``, consecutive samples of the batch).

    The embeddings are built here from ``s_shapes``/``t_shapes`` (one
    ``LinearEmbed(in_features, feat_dim, normalize=False)`` per side and tap), so
    they are this module's parameters. With several taps the per-tap losses are summed.

    Departure from the paper: the paper's loss compares Gaussian-RBF correlation
    matrices of the batch; RepDistiller's version (author-supplied code, used for
    its published numbers) is the product of consecutive absolute differences
    above, which is what this class computes.

    Shapes: ``student``/``teacher``: ``B x ...`` (flattened), sizes fixed by the shapes
    given at construction; batch size >= 2. Defaults: ``feat_dim=128``; RepDistiller
    term weight 0.02 on ``feats[-1]``.
    """

    def __init__(self, s_shapes: Sequence[torch.Size] | None = None, t_shapes: Sequence[torch.Size] | None = None,
                 feat_dim: int = 128):
        super().__init__()
        s_shapes, t_shapes = shape_list(s_shapes), shape_list(t_shapes)
        if s_shapes is None or t_shapes is None:
            raise ValueError("CC builds its student/teacher embeddings from the tapped shapes: pass "
                             "s_shapes=[torch.Size([B, ...])] and t_shapes=[...] (the distiller does this "
                             "automatically from a probe forward)")
        check_same_length(s_shapes, t_shapes, "CC")
        self.feat_dim = int(feat_dim)
        self.s_shapes, self.t_shapes = s_shapes, t_shapes
        self.embed_s = nn.ModuleList(
            [LinearEmbed(int(torch.Size(s[1:]).numel()), self.feat_dim, normalize=False) for s in s_shapes])
        self.embed_t = nn.ModuleList(
            [LinearEmbed(int(torch.Size(t[1:]).numel()), self.feat_dim, normalize=False) for t in t_shapes])

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        pairs = _pairs(student, teacher, "CC")
        if len(pairs) != len(self.embed_s):
            raise ValueError(f"CC was built for {len(self.embed_s)} tap(s) but got {len(pairs)}; "
                             f"rebuild it with s_shapes/t_shapes for these taps")
        total = None
        for i, (s, t) in enumerate(pairs):
            for role, x, shape in (("student", s, self.s_shapes[i]), ("teacher", t, self.t_shapes[i])):
                if x.shape[1:] != shape[1:]:
                    raise ValueError(f"CC: {role} tap {i} has shape {tuple(x.shape)} but the embedding was "
                                     f"built for {tuple(shape)}; rebuild CC with the current shapes")
            if s.shape[0] < 2:
                raise ValueError(f"CC needs a batch of at least 2 samples; got {tuple(s.shape)}")
            e_s = self.embed_s[i](s)
            e_t = self.embed_t[i](t)
            delta = (e_s - e_t).abs()
            loss = (delta[:-1] * delta[1:]).sum(dim=1).mean()
            total = loss if total is None else total + loss
        return total


# --------------------------------------------------------------------------- RKD
def _pdist(e: torch.Tensor, squared: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """Pairwise Euclidean distances ``B x B`` of the rows of ``e`` (zero diagonal)."""
    sq = e.pow(2).sum(dim=1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.t()).clamp(min=eps)
    if not squared:
        d = d.sqrt()
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    return d.masked_fill(eye, 0.0)


def _mean_positive(d: torch.Tensor, name: str) -> torch.Tensor:
    pos = d[d > 0]
    if pos.numel() == 0:
        raise ValueError(f"{name}: no positive pairwise distance in the batch (batch of 1 or non-finite "
                         f"features); use a batch of at least 2 samples with finite features")
    return pos.mean()


def _angles(e: torch.Tensor) -> torch.Tensor:
    """``A[a, b, c] = <unit(e_b - e_a), unit(e_c - e_a)>`` flattened (``B^3``)."""
    diff = F.normalize(e[None, :, :] - e[:, None, :], p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)


@LOSSES.register()
class RKD(nn.Module):
    """Relational KD. Park et al., CVPR 2019, "Relational Knowledge Distillation".

    Features are flattened to ``B x D``.

    - distance: ``psi_D(i, j) = ||f_i - f_j||_2 / mu`` with ``mu`` the mean of the
      positive (off-diagonal) distances of the batch; loss = smooth-L1 (beta 1,
      mean over the ``B x B`` matrix, diagonal included) between student and teacher;
    - angle: ``psi_A(a, b, c) = <unit(f_b - f_a), unit(f_c - f_a)>`` for all ``B^3``
      triplets (degenerate ones are 0); smooth-L1, mean over ``B^3``.

    ``loss = w_d * distance + w_a * angle`` (RepDistiller ``RKDLoss``; the teacher
    side is computed without gradient). With several taps the per-tap losses are summed.

    Shapes: ``student``/``teacher``: ``B x ...`` (widths may differ), ``B >= 2``.
    Defaults: ``w_d=25, w_a=50``; RepDistiller taps ``feats[-1]`` with term weight 1.
    """

    def __init__(self, w_d: float = 25.0, w_a: float = 50.0):
        super().__init__()
        self.w_d = float(w_d)
        self.w_a = float(w_a)

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        total = None
        for s, t in _pairs(student, teacher, "RKD"):
            if s.shape[0] < 2:
                raise ValueError(f"RKD needs a batch of at least 2 samples; got {tuple(s.shape)}")
            fs, ft = _flat(s), _flat(t)
            with torch.no_grad():
                d_t = _pdist(ft)
                d_t = d_t / _mean_positive(d_t, "RKD (teacher)")
                a_t = _angles(ft)
            d_s = _pdist(fs)
            d_s = d_s / _mean_positive(d_s, "RKD (student)")
            loss_d = F.smooth_l1_loss(d_s, d_t)
            loss_a = F.smooth_l1_loss(_angles(fs), a_t)
            loss = self.w_d * loss_d + self.w_a * loss_a
            total = loss if total is None else total + loss
        return total


# --------------------------------------------------------------------------- PKT
@LOSSES.register()
class PKT(nn.Module):
    """Probabilistic knowledge transfer. Passalis & Tefas, ECCV 2018,
    "Learning Deep Representations with Probabilistic Knowledge Transfer".

    Cosine-similarity kernel: rows are divided by ``(||f_i|| + eps)``;
    ``K = (f f^T + 1) / 2`` (values in [0, 1]); conditional probabilities
    ``P = K / K.sum(dim=1)`` (row-normalised, diagonal included); loss
    ``mean_{i,j} P_t log((P_t + eps) / (P_s + eps))`` — the mean over all ``B x B``
    entries (RepDistiller / the authors' ``cosine_similarity_loss``). With several
    taps the per-tap losses are summed.

    Shapes: ``student``/``teacher``: ``B x ...`` flattened (widths may differ).
    Defaults: ``eps=1e-7``; RepDistiller taps ``feats[-1]`` with term weight 30000.
    """

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = float(eps)

    def _conditional(self, f: torch.Tensor) -> torch.Tensor:
        f = _flat(f)
        f = f / (f.norm(p=2, dim=1, keepdim=True) + self.eps)
        f = torch.where(torch.isnan(f), torch.zeros_like(f), f)
        k = (f @ f.t() + 1.0) / 2.0
        return k / k.sum(dim=1, keepdim=True)

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        total = None
        for s, t in _pairs(student, teacher, "PKT"):
            p_s = self._conditional(s)
            p_t = self._conditional(t)
            loss = (p_t * torch.log((p_t + self.eps) / (p_s + self.eps))).mean()
            total = loss if total is None else total + loss
        return total


# --------------------------------------------------------------------------- IRG
def _vertex(x: torch.Tensor) -> torch.Tensor:
    """Instance feature (vertex): global average pool over spatial dims, then flatten to ``B x D``."""
    if x.dim() > 2:
        x = x.mean(dim=tuple(range(2, x.dim())))
    return x


def _index_list(spec: Any, n: int, name: str, what: str) -> list[int]:
    """Normalise a layer selection (``'all'``, ``None``/``()`` = none, or indices) to sorted unique ids."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec != "all":
            raise ValueError(f"IRG: {what}={spec!r}; use 'all', None or a list of tap indices")
        return list(range(n))
    idx = [spec] if isinstance(spec, int) else list(spec)
    out = []
    for i in idx:
        if not -n <= int(i) < n:
            raise ValueError(f"IRG: {what} index {i} is out of range for {n} tap(s)")
        out.append(int(i) % n)
    return sorted(set(out))


@LOSSES.register()
class IRG(nn.Module):
    """Instance relationship graph. Liu et al., CVPR 2019, "Knowledge Distillation via Instance
    Relationship Graph" (authors' Caffe code: yufanLIU/IRG).

    Each tap is reduced to instance features (vertices) ``v = GAP(f)`` of shape
    ``B x D`` (global average pooling over the spatial dims, as the authors'
    prototxts pool before every IRG layer). Three terms:

    - **vertex** (on ``vertex_layers``, default the last tap — the paper's vertex
      loss on the final layer; tap the logits last to get its ``L_logits``):
      ``sum_i ||v_s,i - v_t,i||^2 / (2B)``. Needs equal widths, or
      ``connector='linear'`` to learn a ``LinearEmbed`` (no L2 norm) student -> teacher.
    - **edge** (on ``edge_layers``, default the last tap, as in the released
      ``IRG.prototxt``; ``'all'`` gives the paper's sum over layers): the edge
      matrix is the squared Euclidean distance matrix divided by its maximum,
      ``A_ij = ||v_i - v_j||^2 / max_kl ||v_k - v_l||^2`` (``BatchEuclideanMap``);
      loss ``sum_ij (A_s - A_t)^2 / (2B)`` (Caffe ``EuclideanLoss`` over a ``B x B`` blob).
    - **transformation** (on ``transform_pairs``, default none; ``'consecutive'``
      pairs taps (0, 1), (2, 3), ...): the vertex transformation between layers
      ``l1`` and ``l2`` of the same network, ``Lambda_i = ||v_i^l1 - v_i^l2||^2 /
      max_k ||v_k^l1 - v_k^l2||^2`` (``BatchEuclideanVector``; both layers need the
      same width, e.g. first and last block of a stage); loss
      ``sum_i (Lambda_s,i - Lambda_t,i)^2 / 2`` (Caffe ``EuclideanLoss`` over a
      ``1 x B`` blob, i.e. divided by 2 not 2B). As in the released
      ``IRG_Transformation.prototxt`` only the vertex transformation is used (the
      paper's edge transformation is omitted).

    ``loss = w_vertex * sum vertex + w_edge * sum edge + w_transform * sum transformation``.

    Choices / departures: the edge and transformation weights (0.005 each) are
    the ``loss_weight`` of the authors' released CIFAR prototxts; the released
    prototxts contain no vertex term, so ``w_vertex=0.005`` is our choice (set
    ``w_vertex=0`` to reproduce ``IRG.prototxt`` exactly -- with ``w_vertex=0`` the vertex term is not
    computed and its widths are not checked, so the prototxt's 64-channel teacher / 32-channel student pair
    works without a connector -- and
    ``w_vertex=0, w_edge=0, transform_pairs='consecutive'`` for
    ``IRG_Transformation.prototxt``). The maximum used for normalisation is
    treated as a constant in the backward pass (``detach_max=True``), as in the
    Caffe layers' hand-written gradients (``detach_max=False`` differentiates
    through it). Departure: ``BatchEuclideanMap``'s Caffe backward accumulates
    only the row term of each pair, i.e. half the analytic gradient of the
    symmetric edge loss; we use the analytic gradient. Teacher graphs carry no gradient.

    Shapes: ``student``/``teacher``: a tensor or list of L tensors ``B x C x H x W``
    or ``B x D``; ``B >= 2``. Defaults: ``w_vertex=0.005, w_edge=0.005,
    w_transform=0.005, vertex_layers=(-1,), edge_layers=(-1,), transform_pairs=None``;
    term weight 1 (the weights above are inside the loss).
    """

    def __init__(self, s_shapes: Sequence[torch.Size] | None = None, t_shapes: Sequence[torch.Size] | None = None,
                 w_vertex: float = 0.005, w_edge: float = 0.005, w_transform: float = 0.005,
                 vertex_layers: Any = (-1,), edge_layers: Any = (-1,), transform_pairs: Any = None,
                 connector: str | None = None, detach_max: bool = True, eps: float = 1e-12):
        super().__init__()
        self.w_vertex, self.w_edge, self.w_transform = float(w_vertex), float(w_edge), float(w_transform)
        self.vertex_spec, self.edge_spec, self.transform_spec = vertex_layers, edge_layers, transform_pairs
        self.detach_max = bool(detach_max)
        self.eps = float(eps)
        if connector not in (None, "linear"):
            raise ValueError(f"IRG: connector={connector!r}; use None (equal widths) or 'linear'")
        self.connector_kind = connector
        self.s_shapes, self.t_shapes = shape_list(s_shapes), shape_list(t_shapes)
        self.connectors = nn.ModuleDict()
        if self.s_shapes is not None and self.t_shapes is not None:
            check_same_length(self.s_shapes, self.t_shapes, "IRG")
            self._check_and_build(self.s_shapes, self.t_shapes)
        elif connector is not None:
            raise ValueError("IRG: connector='linear' needs s_shapes and t_shapes to build the embedding")

    # -- configuration ------------------------------------------------------------------
    @staticmethod
    def _width(shape: torch.Size) -> int:
        return int(shape[1]) if len(shape) > 2 else int(torch.Size(shape[1:]).numel())

    def _transform_pairs(self, n: int) -> list[tuple[int, int]]:
        spec = self.transform_spec
        if spec is None or (not isinstance(spec, str) and len(spec) == 0):
            return []
        if spec == "consecutive":
            if n < 2:
                raise ValueError(f"IRG: transform_pairs='consecutive' needs at least 2 taps, got {n}")
            return [(i, i + 1) for i in range(0, n - 1, 2)]
        if isinstance(spec, str):
            raise ValueError(f"IRG: transform_pairs={spec!r}; use None, 'consecutive' or a list of (i, j) pairs")
        pairs = []
        for p in spec:
            if len(p) != 2:
                raise ValueError(f"IRG: transform pair {p!r} must be two tap indices (i, j)")
            i, j = (int(k) for k in p)
            if not (-n <= i < n and -n <= j < n) or i % n == j % n:
                raise ValueError(f"IRG: transform pair {p!r} must name two different taps among {n}")
            pairs.append((i % n, j % n))
        return pairs

    def _check_and_build(self, s_shapes: list[torch.Size], t_shapes: list[torch.Size]) -> None:
        n = len(s_shapes)
        _index_list(self.edge_spec, n, "IRG", "edge_layers")  # validates the indices
        for l in self._vertex_layers(n):
            ws, wt = self._width(s_shapes[l]), self._width(t_shapes[l])
            if ws != wt:
                if self.connector_kind == "linear":
                    self.connectors[str(l)] = LinearEmbed(ws, wt, normalize=False)
                else:
                    raise ValueError(f"IRG: vertex term on tap {l} compares student {tuple(s_shapes[l])} with "
                                     f"teacher {tuple(t_shapes[l])} but their pooled widths differ ({ws} vs {wt}); "
                                     f"pass connector='linear' to learn an embedding, or drop the layer from "
                                     f"vertex_layers")
        for i, j in self._transform_pairs(n):
            for role, shapes in (("student", s_shapes), ("teacher", t_shapes)):
                if self._width(shapes[i]) != self._width(shapes[j]):
                    raise ValueError(f"IRG: transform pair ({i}, {j}) needs equal widths within the {role}; got "
                                     f"{tuple(shapes[i])} and {tuple(shapes[j])}; pair taps of the same stage")

    def _vertex_layers(self, n: int) -> list[int]:
        """Taps of the vertex term; none when ``w_vertex == 0`` (the term is off, so widths need not match)."""
        layers = _index_list(self.vertex_spec, n, "IRG", "vertex_layers")  # validates the indices
        return layers if self.w_vertex != 0 else []

    # -- graph pieces --------------------------------------------------------------------
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        m = x.max()
        if self.detach_max:
            m = m.detach()
        return x / m.clamp(min=self.eps)

    def edge_matrix(self, v: torch.Tensor) -> torch.Tensor:
        """Max-normalised squared Euclidean distances between the instances, ``B x B``."""
        d = (v[:, None, :] - v[None, :, :]).pow(2).sum(dim=2)
        return self._normalise(d)

    def transform_vector(self, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """Max-normalised squared distance of each instance between two layers, ``B``."""
        return self._normalise((v1 - v2).pow(2).sum(dim=1))

    def forward(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        pairs = _pairs(student, teacher, "IRG")
        n = len(pairs)
        if self.s_shapes is not None and len(self.s_shapes) != n:
            raise ValueError(f"IRG was built for {len(self.s_shapes)} tap(s) but got {n}")
        if self.s_shapes is None:  # shapes unknown at construction: validate now
            self._check_and_build([s.shape for s, _ in pairs], [t.shape for _, t in pairs])
        b = pairs[0][0].shape[0]
        if b < 2:
            raise ValueError(f"IRG needs a batch of at least 2 samples; got batch size {b}")
        if any(s.shape[0] != b for s, _ in pairs):
            raise ValueError(f"IRG: all taps must share the batch size; got "
                             f"{[tuple(s.shape) for s, _ in pairs]}")
        vs = [_vertex(s) for s, _ in pairs]
        vt = [_vertex(t).detach() for _, t in pairs]
        zero = vs[0].new_zeros(())
        loss_v, loss_e, loss_t = zero, zero, zero

        for l in self._vertex_layers(n):
            v_s = self.connectors[str(l)](vs[l]) if str(l) in self.connectors else vs[l]
            if v_s.shape != vt[l].shape:
                raise ValueError(f"IRG: vertex term on tap {l}: student {tuple(pairs[l][0].shape)} and teacher "
                                 f"{tuple(pairs[l][1].shape)} pool to different widths; pass connector='linear'")
            loss_v = loss_v + (v_s - vt[l]).pow(2).sum() / (2 * b)

        for l in _index_list(self.edge_spec, n, "IRG", "edge_layers"):
            with torch.no_grad():
                a_t = self.edge_matrix(vt[l])
            loss_e = loss_e + (self.edge_matrix(vs[l]) - a_t).pow(2).sum() / (2 * b)

        for i, j in self._transform_pairs(n):
            for role, v in (("student", vs), ("teacher", vt)):
                if v[i].shape[1] != v[j].shape[1]:
                    raise ValueError(f"IRG: transform pair ({i}, {j}) needs equal widths within the {role}; "
                                     f"got {tuple(v[i].shape)} and {tuple(v[j].shape)}")
            with torch.no_grad():
                lam_t = self.transform_vector(vt[i], vt[j])
            loss_t = loss_t + (self.transform_vector(vs[i], vs[j]) - lam_t).pow(2).sum() / 2

        return self.w_vertex * loss_v + self.w_edge * loss_e + self.w_transform * loss_t


# --------------------------------------------------------------------------- IFM
def cosine_conditional(f: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The conditional probabilities of a batch of features under the cosine kernel (``B x B``).

    Rows of ``f`` (flattened to ``B x D``) are divided by ``||f_i|| + eps`` (a zero row stays zero),
    ``K_ij = (cos(f_i, f_j) + 1) / 2`` in ``[0, 1]`` with the diagonal included (``K_ii = 1``), and every row is
    normalised to sum to 1: ``P[i, j] = K_ij / sum_k K_ik``, the probability of picking ``j`` as the neighbour of
    ``i``. ``K`` is symmetric, so ``P^T`` is the column normalisation ``K_ij / sum_k K_kj``.
    """
    g = gram(_flat(f))
    # normalised on the B x B matrix, cos_ij = g_ij / ((n_i + eps)(n_j + eps)) with n_i = sqrt(g_ii), not on
    # the B x D rows; a row with a non-finite value counts as zero, as the reference zeroes NaNs after dividing
    norm = g.diagonal().clamp_min(0.0).sqrt()
    finite = torch.isfinite(norm)
    inv = torch.where(finite, 1.0 / (norm + eps), 0.0)
    cos = torch.where(finite[:, None] & finite[None, :], g, 0.0) * inv[:, None] * inv[None, :]
    k = (cos + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def student_t_conditional(f: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The same with the Student-t kernel ``K_ij = 1 / (1 + sqrt(||f_i - f_j||^2 + eps))`` (row-normalised)."""
    g = gram(_flat(f))
    sq = g.diagonal()
    d = (sq[:, None] + sq[None, :] - 2.0 * g).clamp(min=0.0)
    k = 1.0 / (1.0 + torch.sqrt(d + eps))
    return k / k.sum(dim=1, keepdim=True)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def jeffreys(p_t: torch.Tensor, p_s: torch.Tensor, reduction: str = "mean", floor: float = 1e-12) -> torch.Tensor:
    """``KL(p_t || p_s) + KL(p_s || p_t)`` entry by entry, ``(p_t - p_s) (log p_t - log p_s)``, summed
    (``'sum'``) or averaged (``'mean'``) over all entries; the logs take ``max(p, floor)``."""
    terms = (p_t - p_s) * (p_t.clamp(min=floor).log() - p_s.clamp(min=floor).log())
    return terms.sum() if reduction == "sum" else terms.mean()


@LOSSES.register()
class IFM(nn.Module):
    """Information-flow modelling. Passalis, Tzelepi & Tefas, CVPR 2020, "Heterogeneous Knowledge
    Distillation using Information Flow Modeling" (authors' code: passalis/pkth).

    For every tapped layer ``l`` the batch's features give conditional probabilities
    (:func:`cosine_conditional`): ``K_ij = (cos(f_i, f_j) + 1) / 2``, ``P_l[i, j] = K_ij / sum_k K_ik`` (each row
    normalised, the diagonal included, as the authors' ``prob_loss``; with a symmetric ``K`` row and column
    normalisation give transposed matrices, so the divergence below is the same either way). Student layer
    ``i`` is matched to teacher layer ``m(i)`` by the Jeffreys divergence
    ``D_J(P_t || P_s) = sum_{ij} (P_t - P_s)_ij (log P_t - log P_s)_ij = KL(P_t || P_s) + KL(P_s || P_t)``,
    divided by the ``B^2`` pairs with ``reduction='mean'`` (the default: the authors' ``torch.mean``, which
    their weights assume) or summed over the pairs with ``reduction='sum'``:

        ``loss = sum_i w_i(epoch) * D_J(P_t^{m(i)} || P_s^i)``

    **Critical-period-aware weights**: the last student tap has weight 1, every other
    ``alpha_init * gamma ** floor(epoch)`` (epochs counted from 0, the fractional ``epoch`` the trainer passes
    in ``**extra``; without it, epoch 0): the intermediate layers dominate early, while the network's
    information flow forms, and fade out (the authors' CIFAR-10 script: weights ``(1, w, w, w)`` for its last
    and three earlier layers, ``w = 100`` in the first epoch, times ``0.7`` after every epoch).

    **Layer matching** (``match``): ``None`` pairs the taps in order (student tap ``i`` with teacher tap
    ``i``: equal counts; the benchmark pairs, whose stages correspond); a list gives ``m(i)`` explicitly;
    ``'divergence'`` pairs each student layer with the teacher layer whose conditional distribution is
    closest to its own, ``m(i) = argmin_j D_J(P_t^j || P_s^i)``, computed once, on the first batch the loss
    sees (averaged over processes under DDP), kept in the ``matched`` buffer (so it is checkpointed and a
    resumed run keeps it) and logged nowhere else; several student layers may share a teacher layer. It is
    measured with the student at initialisation: for heterogeneous pairs an explicit list (or the
    auxiliary-network pipeline, ``configs/pipelines/cifar100_ifm_auxiliary.py``) is the safer choice.

    ``kernel='combined'`` adds, per layer, the same divergence under the Student-t kernel
    (:func:`student_t_conditional`), the kernel pair of the authors' released CIFAR-10 experiments.

    Shapes: ``student`` / ``teacher``: a tensor or list of tensors ``B x ...`` (flattened; widths and spatial
    sizes may differ), ``B >= 2``. Defaults: ``alpha_init=100, gamma=0.7`` (the authors' script),
    ``kernel='cosine'`` (the paper's kernel), ``reduction='mean'``, ``match=None``, ``eps=1e-6`` (the cosine
    normalisation's); CIFAR-100 configs tap ``feats[1:]`` (three stages and the pooled embedding, which is the
    weight-1 layer) with term weight 10000 (configs/_base_/cifar100/methods/ifm.py, our choice: the authors
    train without cross-entropy and publish no CIFAR-100 weight). Departures: the logs take ``max(P, 1e-12)``
    (only matters for exactly opposite features); the teacher side carries no gradient; under AMP the
    distributions are computed in float32.
    """

    MATCHES = ("divergence",)

    def __init__(self, s_shapes: Sequence[torch.Size] | None = None, t_shapes: Sequence[torch.Size] | None = None,
                 alpha_init: float = 100.0, gamma: float = 0.7, kernel: str = "cosine", reduction: str = "mean",
                 match: Any = None, eps: float = 1e-6):
        super().__init__()
        if kernel not in ("cosine", "combined"):
            raise ValueError(f"IFM: kernel={kernel!r}; use 'cosine' (the paper's) or 'combined' (cosine + Student-t, "
                             f"the authors' CIFAR-10 release)")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"IFM: reduction={reduction!r}; use 'mean' (over the B x B pairs) or 'sum'")
        if not gamma > 0:
            raise ValueError(f"IFM: gamma must be > 0, got {gamma}")
        self.alpha_init, self.gamma = float(alpha_init), float(gamma)
        self.kernel, self.reduction, self.eps = kernel, reduction, float(eps)
        s_shapes, t_shapes = shape_list(s_shapes), shape_list(t_shapes)
        self.n_student = len(s_shapes) if s_shapes is not None else None
        self.n_teacher = len(t_shapes) if t_shapes is not None else None
        self.match_mode = "fixed"
        matched = None
        if match is None:
            if s_shapes is not None and t_shapes is not None:
                check_same_length(s_shapes, t_shapes, "IFM (match=None pairs the taps in order)")
            matched = list(range(self.n_student)) if self.n_student is not None else None
        elif isinstance(match, str):
            if match not in self.MATCHES:
                raise ValueError(f"IFM: match={match!r}; use None (taps in order), 'divergence' or a list of "
                                 f"teacher tap indices, one per student tap")
            self.match_mode = match
        else:
            matched = [int(j) for j in match]
            if self.n_student is not None and len(matched) != self.n_student:
                raise ValueError(f"IFM: match lists {len(matched)} teacher taps for {self.n_student} student taps")
            if self.n_teacher is not None and not all(0 <= j < self.n_teacher for j in matched):
                raise ValueError(f"IFM: match={matched} names teacher taps outside 0..{self.n_teacher - 1}")
        self.match_mode = "in_order" if match is None else self.match_mode
        n = self.n_student if self.n_student is not None else (len(matched) if matched is not None else 0)
        self.register_buffer("matched", torch.tensor(matched if matched is not None else [-1] * n, dtype=torch.long))

    # -- pieces -------------------------------------------------------------------------------------------
    def layer_weights(self, n: int, epoch: float | None = None) -> list[float]:
        """The weights of ``n`` student layers at ``epoch``: ``alpha_init * gamma ** floor(epoch)``, 1 for the last."""
        k = math.floor(max(float(epoch), 0.0)) if epoch is not None else 0
        w = self.alpha_init * self.gamma ** k
        return [w] * (n - 1) + [1.0]

    def conditionals(self, f: torch.Tensor) -> list[torch.Tensor]:
        probs = [cosine_conditional(f, self.eps)]
        if self.kernel == "combined":
            probs.append(student_t_conditional(f, self.eps))
        return probs

    def divergence(self, p_t: list[torch.Tensor], p_s: list[torch.Tensor]) -> torch.Tensor:
        return sum(jeffreys(t, s, self.reduction) for t, s in zip(p_t, p_s))

    @torch.no_grad()
    def fit_match(self, p_s: list[list[torch.Tensor]], p_t: list[list[torch.Tensor]]) -> list[int]:
        """``m(i) = argmin_j D_J(P_t^j || P_s^i)`` (the divergence matrix averaged over processes)."""
        d = torch.stack([torch.stack([self.divergence(t, s) for t in p_t]) for s in p_s]).float()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(d)
        matched = d.argmin(dim=1)
        if self.matched.numel() != matched.numel():
            self.matched = matched.to(self.matched.device)
        else:
            self.matched.copy_(matched)
        return matched.tolist()

    def forward(self, student: Any, teacher: Any, epoch: float | None = None, **extra: Any) -> torch.Tensor:
        s_list, t_list = as_list(student), [t.detach() for t in as_list(teacher)]
        if self.match_mode == "in_order":
            s_list, t_list = tap_lists(s_list, t_list, "IFM", expected=self.n_student)
        for role, xs in (("student", s_list), ("teacher", t_list)):
            for i, x in enumerate(xs):
                if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] < 2:
                    shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                    raise ValueError(f"IFM: {role} tap {i} must be a batched feature B x ... with B >= 2; got {shape}")
        b = s_list[0].shape[0]
        if any(x.shape[0] != b for x in s_list + t_list):
            raise ValueError(f"IFM: every tap must share the batch size; got student "
                             f"{[tuple(x.shape) for x in s_list]}, teacher {[tuple(x.shape) for x in t_list]}")
        with torch.autocast(s_list[0].device.type, enabled=False):  # probabilities ~1/B: in float32 at least
            p_s = [self.conditionals(_at_least_fp32(s)) for s in s_list]
            with torch.no_grad():
                p_t = [self.conditionals(_at_least_fp32(t)) for t in t_list]
        if self.match_mode == "divergence" and (self.matched.numel() != len(s_list) or bool((self.matched < 0).any())):
            self.fit_match([[p.detach() for p in ps] for ps in p_s], p_t)
        matched = list(range(len(s_list))) if self.match_mode == "in_order" else self.matched.tolist()
        if len(matched) != len(s_list) or not all(0 <= j < len(t_list) for j in matched):
            raise ValueError(f"IFM: layer matching {matched} does not fit {len(s_list)} student and {len(t_list)} "
                             f"teacher taps; tap the layers the loss was built for")
        weights = self.layer_weights(len(s_list), epoch)
        return sum(w * self.divergence(p_t[j], ps) for w, j, ps in zip(weights, matched, p_s))
