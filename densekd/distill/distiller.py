"""The distiller: one trainable unit holding the student and the distillation terms.

``Distiller(student, task, teachers, terms)`` is an ``nn.Module`` whose
parameters are the student's plus every term's learnable parts (connectors,
embeddings, critics); teachers are held outside the module tree, frozen and
in eval mode. ``forward(batch)`` returns the student output and a dict of
weighted losses: the task's terms and one entry per distillation term. With
``task_weight=0`` the task loss is not computed at all, so a training set
without labels (synthesised images, :mod:`densekd.data.synthesized`) can be
distilled under a labelled task whose validation set has labels.

A term is configured as::

    dict(type='AT', student='feats[1:-1]', teacher='feats[1:-1]', weight=1000)
    dict(type='KD', T=4, weight=0.9)                  # taps default to the model output
    dict(type='CRD', student='feats[-1]', teacher='feats[-1]', weight=0.8,
         teachers='all', ensemble='separate')         # one critic per teacher

``teachers`` picks teachers by index (default 0) or ``'all'``; with several,
``ensemble='mean'`` averages the teacher tensors (KD against the averaged
ensemble), ``'separate'`` builds one loss per teacher and averages the losses.
``init_only=True`` keeps a two-stage term (AB, FSP) out of the main stage, as
RepDistiller does: it then acts only through the initialisation stage.
``connector='conv'|'linear'|'mlp'`` maps each student tap to its teacher tap's
shape with a learnable adapter (1x1 conv + BN, linear, MLP) before any loss.

Losses declare what else they need through the capability classes of :mod:`densekd.losses.base`:
``TeacherFree`` (no teacher network; the loss gets ``teacher=None``, e.g. TfKD), ``SelfTeacher`` (the
student's own output on ``batch[loss.self_teacher_input]``, without gradient, is the teacher, e.g. CS-KD),
``TeacherModules`` (arguments given as teacher module paths in the config and passed as modules, e.g. OFD's
``teacher_bn='bn_before_relu'``), ``ExtraViews`` (the networks' taps on other input views of the batch, e.g.
MLKD's ``batch['image_strong']``: one more forward of the student, with gradients, and of the term's teachers per
view key, passed to the loss as ``views={key: (student, teacher)}``), ``InitStage``, ``SeparateParams`` and
``Adversarial`` (whose extra steps the distillation strategy runs, see :mod:`densekd.strategies.distillation`).

The student reads ``batch[student_input]`` (default ``'image'``; ``'depth'``, ``'L'``, ``'ab'`` for
cross-modal students), teacher ``i`` reads ``batch[teacher_inputs[i]]``. The probe that observes feature
shapes at construction is a batch dict (each network gets its own key) or one tensor for all.
"""
from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from densekd.data.teacher_cache import CacheMismatch, FIX, batch_key, is_cache_key
from densekd.distill.taps import FeatureTaps, TapError, expand_taps, resolve_module
from densekd.losses.base import Adversarial, ExtraViews, InitStage, SelfTeacher, SeparateParams, TeacherFree, \
    TeacherModules, check_capabilities
from densekd.nn.connectors import build_connector
from densekd.registry import LOSSES
from densekd.tasks.base import Task, batch_input, main_output

TERM_KEYS = ("type", "weight", "student", "teacher", "name", "teachers", "ensemble", "init_only", "connector")


@dataclass
class Term:
    name: str
    weight: float
    s_paths: list[str]
    t_paths: list[str]
    single: bool  # pass one tensor rather than a list
    teacher_ids: list[int]
    ensemble: str
    init_only: bool = False
    connector: str | None = None
    cfg: dict = field(default_factory=dict)


def map_tensors(fn: Callable[[torch.Tensor], Any], x: Any) -> Any:
    """``x`` with ``fn`` applied to every tensor in it, through lists, tuples and dicts (other values kept)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if isinstance(x, (list, tuple)):
        return type(x)(map_tensors(fn, v) for v in x)
    if isinstance(x, dict):
        return {k: map_tensors(fn, v) for k, v in x.items()}
    return x


def _fp32(x: Any) -> Any:
    """``x`` with every half / bfloat16 tensor (in lists, tuples and dicts too) cast to float32."""
    return map_tensors(lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t, x)


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        return next((t for t in map(_first_tensor, x) if t is not None), None)
    return None


def _is_single(spec: Any, paths: list[str]) -> bool:
    return (spec is None or isinstance(spec, str)) and len(paths) == 1


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, task: Task, teachers: list[nn.Module] = (), terms: list[dict] = (),
                 task_weight: float = 1.0, probe: torch.Tensor | dict | None = None, num_classes: int | None = None,
                 num_data: int | None = None, teacher_inputs: list[str] | None = None, student_input: str = "image"):
        super().__init__()
        self.student = student
        self.task = task
        self.task_weight = task_weight
        self.student_input = student_input
        self._teachers = list(teachers)  # not submodules: frozen, outside the optimiser and DDP
        self.teacher_inputs = list(teacher_inputs or ["image"] * len(self._teachers))
        for t in self._teachers:
            t.eval()
            for p in t.parameters():
                p.requires_grad_(False)
        self.epoch = 0.0
        self.cached_teachers = False  # teacher taps from the batch (use_teacher_cache)
        self.terms: list[Term] = [self._parse(i, cfg) for i, cfg in enumerate(terms)]
        self.losses = nn.ModuleDict()
        self.connectors = nn.ModuleDict()
        self._adv_cache: dict[str, tuple] = {}
        self._recorded_calls: list | None = None  # see recording_term_calls
        s_all = [p for term in self.terms for p in term.s_paths]
        self.s_taps = FeatureTaps(student, s_all)
        self.t_taps = [FeatureTaps(t, [p for term in self.terms if i in term.teacher_ids for p in term.t_paths])
                       for i, t in enumerate(self._teachers)]
        if self.terms:
            if probe is None:
                raise ValueError("Distiller needs a probe batch (images) to observe feature shapes")
            self._build_losses(probe, num_classes, num_data)

    # -- construction ---------------------------------------------------------
    @property
    def teachers(self) -> list[nn.Module]:
        return self._teachers

    def _parse(self, i: int, cfg: dict) -> Term:
        if "type" not in cfg:
            raise ValueError(f"distill[{i}] = {cfg!r} has no 'type'")
        name = cfg.get("name") or cfg["type"]
        if issubclass(LOSSES.get(cfg["type"]), TeacherFree):
            return self._parse_teacher_free(i, name, cfg)
        if not self._teachers:
            raise ValueError(f"distill[{i}] ({cfg['type']}) needs a teacher, but the config defines no "
                             f"`teacher` (or `teachers`)")
        chosen = cfg.get("teachers", 0)
        ids = list(range(len(self._teachers))) if chosen == "all" else ([chosen] if isinstance(chosen, int) else list(chosen))
        for t in ids:
            if not 0 <= t < len(self._teachers):
                raise ValueError(f"distill[{i}] ({name}): teacher index {t} out of range; "
                                 f"there are {len(self._teachers)} teachers")
        ensemble = cfg.get("ensemble", "separate")
        if ensemble not in ("separate", "mean"):
            raise ValueError(f"distill[{i}] ({name}): ensemble must be 'separate' or 'mean', got {ensemble!r}")
        s_spec, t_spec = cfg.get("student"), cfg.get("teacher", cfg.get("student"))
        s_paths = expand_taps(self.student, s_spec)
        t_paths = expand_taps(self._teachers[ids[0]], t_spec)
        for t in ids[1:]:
            if expand_taps(self._teachers[t], t_spec) != t_paths:
                raise ValueError(f"distill[{i}] ({name}): teacher tap {t_spec!r} means different paths for "
                                 f"teachers {ids[0]} and {t}; give each teacher its own term")
        if len(s_paths) != len(t_paths):
            raise ValueError(f"distill[{i}] ({name}): {len(s_paths)} student taps {s_paths} but "
                             f"{len(t_paths)} teacher taps {t_paths}; list the same number of layers")
        single = _is_single(s_spec, s_paths) and _is_single(t_spec, t_paths)
        kwargs = {k: v for k, v in cfg.items() if k not in TERM_KEYS}
        LOSSES.check_kwargs(cfg["type"], kwargs, where=f"distill[{i}]")
        return Term(name, float(cfg.get("weight", 1.0)), s_paths, t_paths, single, ids, ensemble,
                    bool(cfg.get("init_only", False)), cfg.get("connector"), dict(type=cfg["type"], **kwargs))

    def _parse_teacher_free(self, i: int, name: str, cfg: dict) -> Term:
        """A loss that needs no teacher network (``teacher_free = True``, e.g. TfKD's virtual teacher)."""
        for key in ("teacher", "teachers", "ensemble", "connector"):
            if key in cfg:
                raise ValueError(f"distill[{i}] ({name}): {cfg['type']} uses no teacher network, so "
                                 f"{key!r} has no meaning here; remove it")
        s_spec = cfg.get("student")
        s_paths = expand_taps(self.student, s_spec)
        if issubclass(LOSSES.get(cfg["type"]), SelfTeacher) and s_paths != ["output"]:
            raise ValueError(f"distill[{i}] ({name}): {cfg['type']} compares the student's outputs on two inputs; "
                             f"it taps the model output only (leave `student` unset), got {s_spec!r}")
        kwargs = {k: v for k, v in cfg.items() if k not in TERM_KEYS}
        LOSSES.check_kwargs(cfg["type"], kwargs, where=f"distill[{i}]")
        return Term(name, float(cfg.get("weight", 1.0)), s_paths, [], _is_single(s_spec, s_paths), [], "separate",
                    bool(cfg.get("init_only", False)), None, dict(type=cfg["type"], **kwargs))

    @torch.no_grad()
    def oversized_connectors(self) -> list[tuple[str, int]]:
        """(term name, parameters) of every term whose connectors hold more parameters than the student."""
        budget = sum(p.numel() for p in self.student.parameters())
        sizes = [(name, sum(p.numel() for p in c.parameters())) for name, c in self.connectors.items()]
        return [(name, n) for name, n in sizes if n > budget]

    def _build_losses(self, probe: torch.Tensor | dict, num_classes, num_data) -> None:
        def probe_input(key: str) -> torch.Tensor:
            return batch_input(probe, key, "the probe batch") if isinstance(probe, dict) else probe

        was_training = self.student.training
        self.student.eval()
        s_out = self.student(probe_input(self.student_input))
        t_outs = [t(probe_input(key)) for t, key in zip(self._teachers, self.teacher_inputs)]
        self.student.train(was_training)
        names = set()
        for term in self.terms:
            if term.name in names:
                term.name = f"{term.name}_{len(names)}"
            names.add(term.name)
            s = self.s_taps.collect(term.s_paths, s_out)
            if term.connector:
                t0 = self.t_taps[term.teacher_ids[0]].collect(term.t_paths, t_outs[term.teacher_ids[0]])
                self.connectors[term.name] = nn.ModuleList(
                    build_connector(term.connector, a.shape, b.shape) for a, b in zip(s, t0))
                self.connectors[term.name].eval()
                s = [c(x) for c, x in zip(self.connectors[term.name], s)]
                self.connectors[term.name].train()
            s_shapes = [x.shape for x in s]
            modules = []
            groups = [term.teacher_ids] if term.ensemble == "mean" or len(term.teacher_ids) == 1 else \
                [[t] for t in term.teacher_ids]
            for group in groups or [None]:
                t_shapes = None if group is None else \
                    [x.shape for x in self.t_taps[group[0]].collect(term.t_paths, t_outs[group[0]])]
                cfg = copy.deepcopy(term.cfg)
                if group is not None:
                    self._resolve_teacher_modules(term, cfg, self._teachers[group[0]])
                try:
                    modules.append(LOSSES.build(cfg, where=f"distill term {term.name}",
                                                s_shapes=s_shapes, t_shapes=t_shapes,
                                                num_classes=num_classes, num_data=num_data))
                    check_capabilities(modules[-1])
                except ValueError as exc:
                    raise self._shape_error(term, [tuple(x) for x in s_shapes], [tuple(x) for x in t_shapes or []],
                                            exc) from exc
            if term.init_only and not isinstance(modules[0], InitStage):
                raise ValueError(f"term {term.name}: init_only=True but {term.cfg['type']} has no "
                                 f"initialisation stage (only AB, FT and FSP do)")
            self.losses[term.name] = modules[0] if len(modules) == 1 else nn.ModuleList(modules)
        self.s_taps.clear()
        for taps in self.t_taps:
            taps.clear()

    @staticmethod
    def _resolve_teacher_modules(term: Term, cfg: dict, teacher: nn.Module) -> None:
        """Loss arguments that take teacher modules (a loss's ``teacher_module_args``, e.g. OFD's
        ``teacher_bn``) may be given in the config as module paths, or as the name of a teacher attribute that
        lists module paths (``'bn_before_relu'`` on the CIFAR zoo); replace them by the modules."""
        cls = LOSSES.get(cfg["type"])
        for arg in (cls.teacher_module_args if issubclass(cls, TeacherModules) else ()):
            spec = cfg.get(arg)
            if isinstance(spec, str):
                listed = getattr(teacher, spec, None)
                paths = list(listed) if isinstance(listed, (list, tuple)) else [spec]
            elif isinstance(spec, (list, tuple)) and spec and all(isinstance(p, str) for p in spec):
                paths = list(spec)
            else:
                continue
            try:
                cfg[arg] = [resolve_module(teacher, p) for p in paths]
            except TapError as exc:
                raise ValueError(f"distill term {term.name!r}: {arg}={spec!r} is neither a teacher attribute "
                                 f"listing module paths nor a module path of the teacher "
                                 f"({type(teacher).__name__}): {exc}") from exc

    def distill_state_dict(self) -> dict:
        """Everything but the student: loss parts, connectors, memory banks (for checkpoints)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("student.")}

    def load_distill_state_dict(self, state: dict) -> None:
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("student.")]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not match the configured distillation terms: missing {missing}, "
                               f"unexpected {unexpected}")

    # -- running --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        for t in self._teachers:
            t.eval()  # teachers never leave eval mode
        return self

    def teachers_needed(self) -> bool:
        """Whether the teachers take part in the steps: always without a cache; with one (:meth:`use_teacher_cache`)
        only when a term runs them on other views (``ExtraViews``) or takes their modules (``TeacherModules``,
        e.g. OFD's BatchNorms)."""
        if not self.cached_teachers:
            return True
        return any(isinstance(m, (ExtraViews, TeacherModules)) for term in self.terms for m in self.term_modules(term))

    def teachers_to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        """Move the teachers to ``device``; teachers that a cache replaces altogether stay where they are (the
        CPU), so a cached run spends no GPU memory on them."""
        if not self.teachers_needed():
            return
        for t in self._teachers:
            t.to(device)
            if memory_format is not None:
                t.to(memory_format=memory_format)

    def teacher_tap_paths(self, i: int) -> list[str]:
        """Every tap of teacher ``i`` a term reads (initialisation-stage terms included), in term order, once each:
        what an offline teacher cache must hold for it."""
        return list(dict.fromkeys(p for term in self.terms if i in term.teacher_ids for p in term.t_paths))

    def use_teacher_cache(self) -> None:
        """Take the teachers' taps from the batch (``batch['teacher_cache/<i>/<tap>']``, added by
        :class:`~densekd.data.teacher_cache.TeacherCacheDataset`) instead of running them; the strategy checks
        the cache against the teachers first (:func:`densekd.distill.cache.check_cache`). Terms that read other
        views of the batch (:class:`~densekd.losses.base.ExtraViews`) still run the teachers there."""
        self.cached_teachers = True

    def teacher_taps(self, batch: dict) -> list[Any]:
        """Per teacher, ``collect(paths) -> tensors`` of its taps on this batch: from a forward without
        gradients, or from the batch's cached entries (:meth:`use_teacher_cache`)."""
        if self.cached_teachers:
            return [functools.partial(_cached_taps, batch, i) for i in range(len(self._teachers))]
        outs = []
        with torch.no_grad():
            for i, t in enumerate(self._teachers):
                self.t_taps[i].clear()
                out = t(batch_input(batch, self.teacher_inputs[i], f"teacher {i}"))
                outs.append(functools.partial(self.t_taps[i].collect, output=out))
        return outs

    def _term_inputs(self, term: Term, s_out, t_outs):
        s = self.s_taps.collect(term.s_paths, s_out)
        if term.name in self.connectors:
            s = [c(x) for c, x in zip(self.connectors[term.name], s)]
        if not term.teacher_ids:  # teacher-free term: one loss call with teacher=None
            return (s[0] if term.single else s), [None]
        per_teacher = [t_outs[i](term.t_paths) for i in term.teacher_ids]
        if term.ensemble == "mean" and len(per_teacher) > 1:
            try:
                per_teacher = [[torch.stack(xs).mean(0) for xs in zip(*per_teacher)]]
            except RuntimeError as exc:
                raise ValueError(f"term {term.name}: ensemble='mean' needs equal teacher shapes: {exc}") from exc
        unpack = (lambda xs: xs[0]) if term.single else (lambda xs: xs)
        return unpack(s), [unpack(t) for t in per_teacher]

    def term_modules(self, term: Term) -> list[nn.Module]:
        m = self.losses[term.name]
        return list(m) if isinstance(m, nn.ModuleList) else [m]

    @staticmethod
    def _shape_error(term: Term, s_shapes: list[tuple], t_shapes: list[tuple], exc: Exception) -> Exception:
        """A loss's shape complaint, re-raised with the taps, both shapes and the connector that would fit."""
        if s_shapes == t_shapes or term.connector or not term.teacher_ids:
            return exc
        if all(len(a) == 4 for a in s_shapes):
            hint = "Add connector='conv' to the term (a 1x1 conv + BN per tap from the student's channels to the teacher's)"
        else:
            hint = "Add connector='linear' to the term (a linear map of the student's features to the teacher's size)"
        return ValueError(f"distill term {term.name!r} ({term.cfg['type']}): student taps {term.s_paths} have shapes "
                          f"{s_shapes} but teacher taps {term.t_paths} have {t_shapes}. {hint}, or tap layers of "
                          f"matching shapes (python tools/list_taps.py CONFIG). The loss said: {exc}")

    @contextlib.contextmanager
    def recording_term_calls(self):
        """Within the block, every loss call of a forward is recorded as ``(term, loss module, student input,
        teacher input, extra)``, the inputs as the loss receives them (connectors applied): the benchmark times
        the loss modules alone on them (:func:`densekd.bench.runner.loss_modules_step`) through
        :meth:`call_term`. Yields the list the calls are appended to."""
        self._recorded_calls = calls = []
        try:
            yield calls
        finally:
            self._recorded_calls = None

    def call_term(self, term: Term, module: nn.Module, s, t, extra: dict) -> torch.Tensor:
        """One loss module of ``term`` on its inputs, as :meth:`forward` calls it (AMP: in float32)."""
        if self._recorded_calls is not None:
            self._recorded_calls.append((term, module, s, t, extra))
        try:
            device = _first_tensor(s)
            if device is not None and torch.is_autocast_enabled(device.device.type):
                # AMP: every term in float32 (softmax / KL, log-sum-exp, correlations, norms), on its tapped
                # tensors cast up from the autocast dtype; the networks themselves stay in the low precision
                with torch.autocast(device.device.type, enabled=False):
                    views = {"views": _fp32(extra["views"])} if "views" in extra else {}
                    return module(_fp32(s), _fp32(t), **{**extra, **views})
            return module(s, t, **extra)
        except (ValueError, RuntimeError) as exc:
            shapes = lambda xs: [tuple(x.shape) for x in (xs if isinstance(xs, (list, tuple)) else [xs])
                                 if x is not None]
            raise self._shape_error(term, shapes(s), shapes(t), exc) from exc

    def forward(self, batch: dict) -> tuple[Any, dict[str, torch.Tensor]]:
        active = [t for t in self.terms if not t.init_only]
        # the teachers first: their activations are freed (only the taps stay) before the student's, which the
        # backward pass keeps, are allocated, so the student's forward reuses the teachers' memory instead of
        # the teachers' forward taking fresh pages while the student's activations are live
        t_outs = self.teacher_taps(batch) if active else None
        self.s_taps.clear()
        output = self.student(batch_input(batch, self.student_input, "the student"))
        # task_weight 0: the task loss is not computed, so unlabelled training data (synthesised images) works
        losses = {k: self.task_weight * v for k, v in self.task.loss(output, batch).items()} if self.task_weight else {}
        if not active:
            return output, losses
        extra = {k: v for k, v in batch.items() if not is_cache_key(k)}
        extra["epoch"] = self.epoch
        # every term's inputs first: the forwards on other views and the self-teacher forwards below record
        # into the same taps
        inputs = {term.name: self._term_inputs(term, output, t_outs) for term in active}
        views = self._view_inputs(batch, active)
        for term in active:
            s, ts = inputs[term.name]
            key = self._self_teacher_key(term)
            if key is not None:
                ts = [self._self_teacher_output(term, key, batch)]
            modules = self.term_modules(term)
            if term.name in views:
                values = [self.call_term(term, m, s, t, dict(extra, views=v))
                          for m, t, v in zip(modules, ts, views[term.name])]
            else:
                values = [self.call_term(term, m, s, t, extra) for m, t in zip(modules, ts)]
            losses[term.name] = term.weight * (sum(values) / len(values))
            if isinstance(modules[0], Adversarial):
                self._adv_cache[term.name] = (s, ts, batch.get(self.student_input))
        return output, losses

    def _extra_views(self, term: Term) -> tuple[str, ...]:
        m = self.term_modules(term)[0]
        return tuple(m.extra_views) if isinstance(m, ExtraViews) else ()

    def _view_inputs(self, batch: dict, terms: list[Term]) -> dict[str, list[dict]]:
        """For each term that reads other views (:class:`~densekd.losses.base.ExtraViews`), one dict per loss
        module: ``{key: (student taps, teacher taps)}`` on ``batch[key]``. One student forward (with
        gradients) and one forward of each teacher that such a term uses (without) per key."""
        readers = [(t, self._extra_views(t)) for t in terms]
        readers = [(t, keys) for t, keys in readers if keys]
        if not readers:
            return {}
        out = {t.name: [{} for _ in self.term_modules(t)] for t, _ in readers}
        for key in dict.fromkeys(k for _, keys in readers for k in keys):
            users = [t for t, keys in readers if key in keys]
            if key not in batch:
                names = ", ".join(f"{t.name} ({t.cfg['type']})" for t in users)
                raise KeyError(f"term {names} reads the networks' outputs on batch[{key!r}], which this batch lacks "
                               f"(keys: {sorted(batch)}); wrap the training set in a dataset that adds that view, "
                               f"e.g. data.train = dict(type='StrongAugmentView', key={key!r}, dataset=dict(...))")
            self.s_taps.clear()
            s_out = self.student(batch[key])
            t_outs: list[Any] = [None] * len(self._teachers)
            with torch.no_grad():
                for i in sorted({i for t in users for i in t.teacher_ids}):
                    self.t_taps[i].clear()
                    t_outs[i] = functools.partial(self.t_taps[i].collect, output=self._teachers[i](batch[key]))
            for term in users:
                s, ts = self._term_inputs(term, s_out, t_outs)
                for j, t in enumerate(ts):
                    out[term.name][j][key] = (s, t)
        return out

    def _self_teacher_key(self, term: Term) -> str | None:
        m = self.term_modules(term)[0]
        return m.self_teacher_input if isinstance(m, SelfTeacher) else None

    def _self_teacher_output(self, term: Term, key: str, batch: dict) -> torch.Tensor:
        """The student's own output on ``batch[key]``, without gradient (CS-KD's class-mates)."""
        if key not in batch:
            raise KeyError(f"term {term.name} ({term.cfg['type']}) needs batch[{key!r}] (the student's second "
                           f"input); wrap the training set in ClassPairDataset: data.train = "
                           f"dict(type='ClassPairDataset', dataset=dict(type=...))")
        with torch.no_grad():
            return main_output(self.student(batch[key]))

    # -- initialisation stage (AB, FT, FSP) -------------------------------------
    def init_terms(self) -> list[Term]:
        return [t for t in self.terms if all(isinstance(m, InitStage) for m in self.term_modules(t))]

    def init_trains_student(self) -> bool:
        return any(m.init_trains_student for t in self.init_terms() for m in self.term_modules(t))

    def init_parameters(self) -> list[nn.Parameter]:
        """Parameters the initialisation stage trains: loss parts, plus the student where a term asks."""
        params = [p for t in self.init_terms() for m in self.term_modules(t) for p in m.init_parameters()]
        params += [p for t in self.init_terms() if t.name in self.connectors for p in self.connectors[t.name].parameters()]
        if self.init_trains_student():
            params = list(self.student.parameters()) + params
        return list({id(p): p for p in params}.values())

    def init_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Losses of the initialisation stage. A student this stage does not train runs in eval mode
        without gradients (RepDistiller: FT pre-trains the paraphraser while the student's BN stays put)."""
        self.s_taps.clear()
        trains_student = self.init_trains_student()
        self.student.train(trains_student and self.training)
        with contextlib.nullcontext() if trains_student else torch.no_grad():
            s_out = self.student(batch_input(batch, self.student_input, "the student"))
        t_outs = self.teacher_taps(batch)
        extra = {k: v for k, v in batch.items() if not is_cache_key(k)}
        extra["epoch"] = self.epoch
        losses = {}
        for term in self.init_terms():
            s, ts = self._term_inputs(term, s_out, t_outs)
            values = [m.init_loss(s, t, **extra) for m, t in zip(self.term_modules(term), ts)]
            losses[f"init_{term.name}"] = sum(values) / len(values)
        self.student.train(self.training)
        return losses

    # -- adversarial terms -------------------------------------------------------
    def adversarial_modules(self) -> dict[str, list[nn.Module]]:
        return {t.name: self.term_modules(t) for t in self.terms if isinstance(self.term_modules(t)[0], Adversarial)}

    def adversarial_inputs(self, name: str):
        return self._adv_cache.get(name)

    def separate_parameters(self) -> list[nn.Parameter]:
        params = []
        for term in self.terms:
            for m in self.term_modules(term):
                if isinstance(m, SeparateParams):
                    params += list(m.separate_parameters())
        return params



def _cached_taps(batch: dict, teacher: int, paths: list[str]) -> list[torch.Tensor]:
    """Teacher ``teacher``'s cached tensors at ``paths`` from the batch (see :meth:`Distiller.use_teacher_cache`)."""
    try:
        return [batch[batch_key(teacher, p)] for p in paths]
    except KeyError as exc:
        raise CacheMismatch(f"the batch has no cached teacher tensor {exc.args[0]!r}: the training set is not read "
                            f"through the teacher cache, or the cache lacks that tap; write it with {FIX}") from None
