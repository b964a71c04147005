"""Teacher-assistant chains (TAKD: Mirzadeh, Farajtabar, Li, Levine, Matsukawa and Ghasemzadeh, "Improved
Knowledge Distillation via Teacher Assistant", AAAI 2020) as pipeline stages.

A chain ``[m0, m1, ..., mk]`` trains ``m0`` alone, then distils each ``m(i)`` from the best checkpoint of
``m(i-1)``: ``m1 ... m(k-1)`` are the teacher assistants, ``mk`` the student. Any number of assistants; each
stage is an ordinary pipeline stage, so a chain resumes in whichever stage it was stopped and skips the
finished ones (see :mod:`densekd.pipelines.runner`), and the pipeline's report is the table of all stages.

    # configs/pipelines/cifar100_takd_resnet110_to_resnet8.py
    from densekd.pipelines.chains import kd_chain
    stages = kd_chain(['resnet110', 'resnet56', 'resnet32', 'resnet20', 'resnet14', 'resnet8'],
                      teacher_config='configs/cifar100/chain/teacher.py',
                      stage_config='configs/cifar100/chain/kd.py')
"""
from __future__ import annotations

from typing import Sequence


def kd_chain(models: Sequence[str], *, teacher_config: str, stage_config: str,
             names: Sequence[str] | None = None, cfg_options: dict | None = None) -> list[dict]:
    """The stages of a distillation chain over the model types ``models`` (first = the teacher trained alone).

    ``teacher_config`` trains the first model (``model.type`` set to ``models[0]``); ``stage_config`` is one
    distillation stage (a config with ``model`` and ``teacher`` sections, e.g. KD) used for every later link
    with ``model.type``, ``teacher.model.type`` and ``teacher.checkpoint`` (the previous stage's best) set.
    ``names`` name the stages (default: the model types; they must be unique); ``cfg_options`` are added to
    every distillation stage (e.g. ``{'distill.0.T': 4}``)."""
    models = [str(m) for m in models]
    if len(models) < 2:
        raise ValueError(f"a distillation chain needs a teacher and at least one student; got {models}")
    names = list(models if names is None else names)
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(f"kd_chain: names must be {len(models)} unique stage names (one per model); got {names}. "
                         f"Pass names=[...] when a model type appears twice in the chain")
    stages = [dict(name=names[0], config=teacher_config, cfg_options={"model.type": models[0]})]
    for prev, name, model, teacher in zip(names, names[1:], models[1:], models):
        options = {"model.type": model, "teacher.model.type": teacher, "teacher.checkpoint": f"{{{prev}.best}}"}
        options.update(cfg_options or {})
        stages.append(dict(name=name, config=stage_config, cfg_options=options))
    return stages
