"""The distiller: one trainable unit holding the student and the distillation terms.

``Distiller(student, task, teachers, terms)`` is an ``nn.Module`` whose
parameters are the student's plus every term's learnable parts (connectors,
embeddings, critics); teachers are held outside the module tree, frozen and
in eval mode. ``forward(batch)`` returns the student output and a dict of
weighted losses: the task's terms and one entry per distillation term.

A term is configured as::

    dict(type='AT', student='feats[1:-1]', teacher='feats[1:-1]', weight=1000)
    dict(type='KD', T=4, weight=0.9)                  # taps default to the model output
    dict(type='CRD', student='feats[-1]', teacher='feats[-1]', weight=0.8,
         teachers='all', ensemble='separate')         # one critic per teacher

``teachers`` picks teachers by index (default 0) or ``'all'``; with several,
``ensemble='mean'`` averages the teacher tensors (KD against the averaged
ensemble), ``'separate'`` builds one loss per teacher and averages the losses.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from densekd.distill.taps import FeatureTaps, expand_taps
from densekd.registry import LOSSES
from densekd.tasks.base import Task, main_output

TERM_KEYS = ("type", "weight", "student", "teacher", "name", "teachers", "ensemble")


@dataclass
class Term:
    name: str
    weight: float
    s_paths: list[str]
    t_paths: list[str]
    single: bool  # pass one tensor rather than a list
    teacher_ids: list[int]
    ensemble: str
    cfg: dict = field(default_factory=dict)


def _is_single(spec: Any, paths: list[str]) -> bool:
    return (spec is None or isinstance(spec, str)) and len(paths) == 1


class Distiller(nn.Module):
    def __init__(self, student: nn.Module, task: Task, teachers: list[nn.Module] = (), terms: list[dict] = (),
                 task_weight: float = 1.0, probe: torch.Tensor | None = None, num_classes: int | None = None,
                 num_data: int | None = None, teacher_inputs: list[str] | None = None):
        super().__init__()
        self.student = student
        self.task = task
        self.task_weight = task_weight
        self._teachers = list(teachers)  # not submodules: frozen, outside the optimiser and DDP
        self.teacher_inputs = list(teacher_inputs or ["image"] * len(self._teachers))
        for t in self._teachers:
            t.eval()
            for p in t.parameters():
                p.requires_grad_(False)
        self.epoch = 0.0
        self.terms: list[Term] = [self._parse(i, cfg) for i, cfg in enumerate(terms)]
        self.losses = nn.ModuleDict()
        self._adv_cache: dict[str, tuple] = {}
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
        if not self._teachers:
            raise ValueError(f"distill[{i}] ({cfg['type']}) needs a teacher, but the config defines no "
                             f"`teacher` (or `teachers`)")
        name = cfg.get("name") or cfg["type"]
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
                    dict(type=cfg["type"], **kwargs))

    @torch.no_grad()
    def _build_losses(self, probe: torch.Tensor, num_classes, num_data) -> None:
        was_training = self.student.training
        self.student.eval()
        s_out = main_output(self.student(probe))
        t_outs = [main_output(t(probe)) for t in self._teachers]
        self.student.train(was_training)
        names = set()
        for term in self.terms:
            if term.name in names:
                term.name = f"{term.name}_{len(names)}"
            names.add(term.name)
            s = self.s_taps.collect(term.s_paths, s_out)
            s_shapes = [x.shape for x in s]
            modules = []
            groups = [term.teacher_ids] if term.ensemble == "mean" or len(term.teacher_ids) == 1 else \
                [[t] for t in term.teacher_ids]
            for group in groups:
                t = self.t_taps[group[0]].collect(term.t_paths, t_outs[group[0]])
                modules.append(LOSSES.build(copy.deepcopy(term.cfg), where=f"distill term {term.name}",
                                            s_shapes=s_shapes, t_shapes=[x.shape for x in t],
                                            num_classes=num_classes, num_data=num_data))
            self.losses[term.name] = modules[0] if len(modules) == 1 else nn.ModuleList(modules)
        self.s_taps.clear()
        for taps in self.t_taps:
            taps.clear()

    # -- running --------------------------------------------------------------
    def train(self, mode: bool = True) -> "Distiller":
        super().train(mode)
        for t in self._teachers:
            t.eval()  # teachers never leave eval mode
        return self

    def teachers_to(self, device: torch.device, memory_format: torch.memory_format | None = None) -> None:
        for t in self._teachers:
            t.to(device)
            if memory_format is not None:
                t.to(memory_format=memory_format)

    def _teacher_forward(self, batch: dict) -> list[Any]:
        outs = []
        with torch.no_grad():
            for i, t in enumerate(self._teachers):
                self.t_taps[i].clear()
                outs.append(main_output(t(batch[self.teacher_inputs[i]])))
        return outs

    def _term_inputs(self, term: Term, s_out, t_outs):
        s = self.s_taps.collect(term.s_paths, s_out)
        per_teacher = [self.t_taps[i].collect(term.t_paths, t_outs[i]) for i in term.teacher_ids]
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

    def forward(self, batch: dict) -> tuple[Any, dict[str, torch.Tensor]]:
        self.s_taps.clear()
        output = self.student(batch["image"])
        losses = {k: self.task_weight * v for k, v in self.task.loss(output, batch).items()}
        if not self.terms:
            return output, losses
        t_outs = self._teacher_forward(batch)
        s_out = main_output(output)
        extra = {k: v for k, v in batch.items()}
        extra["epoch"] = self.epoch
        for term in self.terms:
            s, ts = self._term_inputs(term, s_out, t_outs)
            modules = self.term_modules(term)
            values = [m(s, t, **extra) for m, t in zip(modules, ts)]
            losses[term.name] = term.weight * (sum(values) / len(values))
            if hasattr(modules[0], "discriminator_loss"):
                self._adv_cache[term.name] = (s, ts, batch.get("image"))
        return output, losses

    # -- initialisation stage (AB, FT, FSP) -------------------------------------
    def init_terms(self) -> list[Term]:
        return [t for t in self.terms if all(hasattr(m, "init_loss") for m in self.term_modules(t))]

    def init_parameters(self) -> list[nn.Parameter]:
        """Parameters the initialisation stage trains: loss parts, plus the student where a term asks."""
        params: list[nn.Parameter] = []
        trains_student = False
        for term in self.init_terms():
            for m in self.term_modules(term):
                params += list(m.init_parameters())
                trains_student |= bool(getattr(m, "init_trains_student", False))
        if trains_student:
            params = list(self.student.parameters()) + params
        return list({id(p): p for p in params}.values())

    def init_forward(self, batch: dict) -> dict[str, torch.Tensor]:
        self.s_taps.clear()
        s_out = main_output(self.student(batch["image"]))
        t_outs = self._teacher_forward(batch)
        extra = dict(batch, epoch=self.epoch)
        losses = {}
        for term in self.init_terms():
            s, ts = self._term_inputs(term, s_out, t_outs)
            values = [m.init_loss(s, t, **extra) for m, t in zip(self.term_modules(term), ts)]
            losses[f"init_{term.name}"] = sum(values) / len(values)
        return losses

    # -- adversarial terms -------------------------------------------------------
    def adversarial_modules(self) -> dict[str, list[nn.Module]]:
        return {t.name: self.term_modules(t) for t in self.terms if hasattr(self.term_modules(t)[0], "discriminator_loss")}

    def adversarial_inputs(self, name: str):
        return self._adv_cache.get(name)

    def separate_parameters(self) -> list[nn.Parameter]:
        params = []
        for term in self.terms:
            for m in self.term_modules(term):
                if hasattr(m, "separate_parameters"):
                    params += list(m.separate_parameters())
        return params

