"""What a loss can declare beyond ``forward(student, teacher, **extra) -> scalar``: its capabilities.

A capability is a base class; a loss declares one by deriving from it and implementing its methods. The
distiller and the strategies ask ``isinstance(loss, InitStage)``, never whether an attribute happens to exist.

========================  ==============================================================  ================
capability                what the loss provides                                          used by
========================  ==============================================================  ================
:class:`InitStage`        ``init_loss(student, teacher, **extra)``, ``init_parameters()``,  AB, FT, FSP
                          ``init_trains_student`` (bool): a stage before the main schedule
:class:`SeparateParams`   ``separate_parameters()``: parameters that the student's          FT (paraphraser)
                          optimiser must not update
:class:`Adversarial`      ``discriminator_loss(student, teacher, image=None)``,             HolisticKD
                          ``build_d_optimizer()``, ``n_critic``: a critic with its own
                          optimiser, stepped ``n_critic`` times per student step
:class:`TeacherFree`      nothing: the loss runs without a teacher network (``teacher`` is   TfKD
                          ``None``)
:class:`SelfTeacher`      ``self_teacher_input`` (a batch key): the student's own output    CS-KD
                          on ``batch[key]``, without gradient, is the teacher
:class:`TeacherModules`   ``teacher_module_args`` (constructor arguments): module paths in   OFD
                          the config are turned into the teacher's modules
:class:`ExtraViews`       ``extra_views`` (batch keys): the networks' taps on other input    MLKD, ViewCE
                          views of the batch, passed as ``views={key: (student, teacher)}``
:class:`RankSynchronised` ``rank_synchronised_buffers``: buffers the loss keeps equal on    CRD
                          every rank itself; DDP does not broadcast them each step
========================  ==============================================================  ================

:func:`check_capabilities` is called when a loss is built: a loss that claims a capability and lacks its
method, or that defines a capability's method without claiming it, fails with a one-line error naming
the fix.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

__all__ = ["InitStage", "SeparateParams", "Adversarial", "TeacherFree", "SelfTeacher", "TeacherModules",
           "RankSynchronised",
           "ExtraViews", "capabilities", "check_capabilities", "CapabilityError"]


class CapabilityError(TypeError):
    """A loss's declared capabilities and its methods disagree."""


class SeparateParams:
    """Capability: parameters outside the student's optimiser (``separate_parameters()``)."""

    def separate_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError


class InitStage:
    """Capability: an initialisation stage before the main schedule (AB, FT, FSP).

    ``init_loss(student, teacher, **extra)`` is minimised over ``init_parameters()`` (plus the student's
    parameters when the class sets ``init_trains_student = True``; a stage that does not train the student
    runs it in eval mode without gradients). The class must set ``init_trains_student`` itself.
    """

    init_trains_student: bool

    def init_loss(self, student: Any, teacher: Any, **extra: Any) -> torch.Tensor:
        raise NotImplementedError

    def init_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError


class Adversarial(SeparateParams):
    """Capability: a critic trained against the student (WGAN-GP's holistic term).

    ``separate_parameters()`` are the critic's; ``build_d_optimizer()`` returns its optimiser;
    ``discriminator_loss(student.detach(), teacher, image)`` is minimised ``n_critic`` times per student step.
    A non-finite critic loss raises ``FloatingPointError``.
    """

    n_critic: int = 1

    def discriminator_loss(self, student: Any, teacher: Any, image: torch.Tensor | None = None,
                           **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError

    def build_d_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError


class TeacherFree:
    """Capability: the loss needs no teacher network; it is called with ``teacher=None``."""

    teacher_free = True


class SelfTeacher(TeacherFree):
    """Capability: the student's own output on ``batch[self_teacher_input]`` (no gradient) is the teacher."""

    self_teacher_input: str = ""


class TeacherModules:
    """Capability: constructor arguments named in ``teacher_module_args`` take teacher modules; the config may
    give module paths (or the name of a teacher attribute listing paths) and the distiller resolves them."""

    teacher_module_args: tuple[str, ...] = ()


class ExtraViews:
    """Capability: the loss also reads the networks' outputs on other input views of the same samples (MLKD's
    strongly augmented copy of each image).

    ``extra_views`` is a tuple of batch keys (e.g. ``('image_strong',)``); the class sets a default and an
    instance may replace it in ``__init__`` (from a constructor argument). For every key the distiller runs the
    student (with gradients, in its current train/eval mode) and the term's teachers (frozen, without
    gradients) on ``batch[key]`` in place of their usual inputs, collects the term's taps there (through the
    term's connectors, as on the main input) and calls ``forward(student, teacher, views={key: (student_taps,
    teacher_taps)}, **extra)``; ``teacher_taps`` is ``None`` for a teacher-free loss. Each key costs one
    forward of each network per step, shared by all terms that read it. Data wrappers add the keys (e.g.
    :class:`~densekd.data.multiview.StrongAugmentView`); the engine knows none of them.
    """

    extra_views: tuple[str, ...] = ()


class RankSynchronised:
    """Capability: buffers the loss keeps identical on every rank by itself (CRD's memory banks: each rank
    applies the all-gathered update), listed in ``rank_synchronised_buffers``. The trainer tells DDP to leave
    them out of its per-step broadcast from rank 0 (at CIFAR scale CRD's two banks are ~51 MB a step)."""

    rank_synchronised_buffers: tuple[str, ...] = ()


def _valid_views(views: Any) -> bool:
    return isinstance(views, tuple) and len(views) > 0 and all(isinstance(k, str) and k for k in views)


_METHODS = {
    InitStage: ("init_loss", "init_parameters"),
    SeparateParams: ("separate_parameters",),
    Adversarial: ("discriminator_loss", "build_d_optimizer"),
}
_CLAIMS = {  # a member of this name means the loss meant to have the capability
    "init_loss": InitStage, "init_parameters": InitStage, "init_trains_student": InitStage,
    "separate_parameters": SeparateParams, "discriminator_loss": Adversarial, "build_d_optimizer": Adversarial,
    "n_critic": Adversarial, "teacher_free": TeacherFree, "self_teacher_input": SelfTeacher,
    "teacher_module_args": TeacherModules, "extra_views": ExtraViews,
    "rank_synchronised_buffers": RankSynchronised,
}
CAPABILITIES = (InitStage, SeparateParams, Adversarial, TeacherFree, SelfTeacher, TeacherModules, ExtraViews,
                RankSynchronised)


def capabilities(loss: Any) -> list[type]:
    """The capability classes a loss (instance or class) declares."""
    cls = loss if inspect.isclass(loss) else type(loss)
    return [c for c in CAPABILITIES if issubclass(cls, c)]


def _defines(cls: type, name: str) -> bool:
    """Whether ``name`` is defined by ``cls`` or a base other than the capability classes themselves."""
    for klass in cls.__mro__:
        if klass in CAPABILITIES or klass is object:
            continue
        if name in vars(klass):
            return True
    return False


def check_capabilities(loss: Any) -> None:
    """Raise :class:`CapabilityError` when a loss's declared capabilities and its members disagree."""
    cls = loss if inspect.isclass(loss) else type(loss)
    name = cls.__name__
    declared = capabilities(cls)
    for cap in declared:
        for method in _METHODS.get(cap, ()):
            if not _defines(cls, method):
                raise CapabilityError(f"loss {name} declares {cap.__name__} but does not implement {method}(); "
                                      f"implement it or drop {cap.__name__} from its bases")
    if InitStage in declared and not isinstance(getattr(cls, "init_trains_student", None), bool):
        raise CapabilityError(f"loss {name} declares InitStage but does not set init_trains_student = True/False "
                              f"(whether the initialisation stage trains the student)")
    if SelfTeacher in declared:
        key = getattr(cls, "self_teacher_input", "")
        if not isinstance(key, str) or not key:
            raise CapabilityError(f"loss {name} declares SelfTeacher but sets no self_teacher_input (the batch "
                                  f"key of the student's second input, e.g. 'pair_image')")
    if TeacherModules in declared:
        args = getattr(cls, "teacher_module_args", ())
        params = inspect.signature(cls.__init__).parameters if inspect.isclass(cls) else {}
        missing = [a for a in args if a not in params]
        if not args or missing:
            raise CapabilityError(f"loss {name} declares TeacherModules but teacher_module_args={tuple(args)!r} "
                                  f"{'is empty' if not args else f'names no constructor parameter {missing}'}; "
                                  f"list the constructor arguments that take teacher modules")
    if ExtraViews in declared:
        views = getattr(loss, "extra_views", ())
        if not _valid_views(views):
            raise CapabilityError(f"loss {name} declares ExtraViews but extra_views={views!r} is not a non-empty "
                                  f"tuple of batch keys (e.g. ('image_strong',)); set it on the class or in __init__")
    if RankSynchronised in declared:
        names = getattr(loss, "rank_synchronised_buffers", ())
        if not _valid_views(names):
            raise CapabilityError(f"loss {name} declares RankSynchronised but rank_synchronised_buffers={names!r} "
                                  f"is not a non-empty tuple of buffer names")
        if not inspect.isclass(loss) and isinstance(loss, nn.Module):
            have = dict(loss.named_buffers(recurse=False))
            missing = [b for b in names if b not in have]
            if missing:
                raise CapabilityError(f"loss {name} declares RankSynchronised buffers {missing} that it does not "
                                      f"register; register them or drop them from rank_synchronised_buffers")
    for member, cap in _CLAIMS.items():
        if cap not in declared and _defines(cls, member):
            raise CapabilityError(f"loss {name} defines {member} but does not declare the {cap.__name__} "
                                  f"capability; derive it from densekd.losses.base.{cap.__name__}")
