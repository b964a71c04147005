"""The loss capability protocol (densekd.losses.base) and the purity of densekd.losses."""
import subprocess
import sys

import pytest
import torch
from torch import nn

from densekd.distill.distiller import Distiller
from densekd.losses.base import (Adversarial, CapabilityError, InitStage, SelfTeacher, TeacherFree, TeacherModules,
                                 capabilities, check_capabilities)
from densekd.registry import LOSSES, MODELS, TASKS
from tests.conftest import ROOT

CLS = TASKS.build(dict(type="classification"))


def test_every_registered_loss_satisfies_its_declared_capabilities():
    declared = {}
    for name in (n for n in LOSSES.names() if not n.startswith("_")):  # test-only losses are broken on purpose
        check_capabilities(LOSSES.get(name))
        declared[name] = {c.__name__ for c in capabilities(LOSSES.get(name))}
    assert "InitStage" in declared["FT"] and "SeparateParams" in declared["FT"]
    assert declared["AB"] == declared["FSP"] == {"InitStage"}
    assert "Adversarial" in declared["HolisticKD"] and declared["OFD"] == {"TeacherModules"}
    assert declared["TfKD"] == {"TeacherFree"} and declared["CSKD"] == {"TeacherFree", "SelfTeacher"}
    assert declared["KD"] == set()


@LOSSES.register("_ClaimsInit")
class ClaimsInit(InitStage, nn.Module):
    """Test-only: declares an initialisation stage but implements only forward."""

    init_trains_student = False

    def forward(self, student, teacher, **extra):
        return (student - teacher).pow(2).mean()


@LOSSES.register("_HiddenCritic")
class HiddenCritic(nn.Module):
    """Test-only: has a critic method without declaring Adversarial."""

    def forward(self, student, teacher, **extra):
        return (student - teacher).pow(2).mean()

    def discriminator_loss(self, student, teacher, image=None):
        return student.sum()


def test_a_loss_whose_claims_and_methods_disagree_fails_at_build_time():
    torch.manual_seed(0)
    s, t = MODELS.build(dict(type="resnet8")), MODELS.build(dict(type="resnet8"))
    probe = torch.randn(2, 3, 32, 32)
    with pytest.raises(CapabilityError, match="_ClaimsInit|ClaimsInit declares InitStage but does not implement init_loss"):
        Distiller(s, CLS, [t], [dict(type="_ClaimsInit")], probe=probe)
    with pytest.raises(CapabilityError, match="HiddenCritic defines discriminator_loss but does not declare the "
                                              "Adversarial capability"):
        Distiller(s, CLS, [t], [dict(type="_HiddenCritic")], probe=probe)


def test_capability_declarations_are_checked_for_their_attributes():
    class NoKey(SelfTeacher, nn.Module):
        pass

    class NoArgs(TeacherModules, nn.Module):
        teacher_module_args = ("teacher_bn",)

        def __init__(self, margin=1.0):
            super().__init__()

    class NoFlag(InitStage, nn.Module):
        def init_loss(self, s, t, **e):
            return s

        def init_parameters(self):
            return []

    class Critic(Adversarial, nn.Module):
        def discriminator_loss(self, s, t, image=None, **kw):
            return s

    class Uncritical(Critic):
        def separate_parameters(self):
            return []

    class Free(nn.Module):
        teacher_free = True

    with pytest.raises(CapabilityError, match="sets no self_teacher_input"):
        check_capabilities(NoKey)
    with pytest.raises(CapabilityError, match=r"names no constructor parameter \['teacher_bn'\]"):
        check_capabilities(NoArgs)
    with pytest.raises(CapabilityError, match="does not set init_trains_student"):
        check_capabilities(NoFlag)
    with pytest.raises(CapabilityError, match="declares SeparateParams but does not implement separate_parameters"):
        check_capabilities(Critic)
    with pytest.raises(CapabilityError, match="declares Adversarial but does not implement build_d_optimizer"):
        check_capabilities(Uncritical)
    with pytest.raises(CapabilityError, match="defines teacher_free but does not declare the TeacherFree"):
        check_capabilities(Free)
    assert issubclass(SelfTeacher, TeacherFree)


def test_losses_import_nothing_from_distill_engine_or_strategies():
    code = ("import sys, densekd.losses; bad = sorted(m for m in sys.modules if m.startswith(('densekd.distill', "
            "'densekd.engine', 'densekd.strategies'))); print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
