"""A pipeline config: ordered stages, each a training config plus options, checked before anything trains.

A pipeline config is a Python file, loaded with densekd's config loader (so ``_base_`` works)::

    stages = [
        dict(name='teacher', config='configs/cifar100/teachers/resnet56.py'),
        dict(name='student', config='configs/cifar100/distill/resnet56-resnet20/kd.py',
             cfg_options={'teacher.checkpoint': '{teacher.best}'}),
    ]
    cfg_options = ['data.num_workers=2']      # optional, applied to every stage

``stages`` may also be a dict ``{name: stage}`` (in order; the key is the stage's ``name``). Then pipelines
compose through ``_base_`` as configs do: a child's ``stages = dict(pretrain=dict(config=...))`` merges into its
base's stage of that name key by key, a new name is appended, and ``name=None`` removes the base's stage::

    # configs/pipelines/stl10_crossmodal/kd.py
    _base_ = ['./_base_/row.py']          # stages = dict(teacher=..., pretrain=..., probe=..., finetune=...)
    stages = dict(pretrain=dict(config='configs/stl10/crossmodal/ab_kd.py'))

Pipeline keys: ``stages`` (required), ``cfg_options``, ``work_dir`` (instead of the default
``work_dirs/<pipeline config name>/``), ``description`` (free text). Stage keys: ``name`` (letters,
digits, ``_``, ``-``; the stage trains in ``<pipeline work dir>/<name>/``), ``config``, ``cfg_options``,
``description``, ``kind`` and ``checkpoint``. ``kind='train'`` (the default) trains the config; ``kind='probe'``
linearly probes ``checkpoint`` (usually a reference such as ``'{distil.best}'``) with the config's ``model`` and
``probe`` section (:mod:`densekd.probe`; set the tap with ``cfg_options={'probe.layer': 'feats[-1]'}``) and
writes ``probe_summary.json`` instead of training::

    dict(name='probe', kind='probe', config='configs/cifar100/students/resnet8x4.py', checkpoint='{crd.best}',
         cfg_options={'probe.layer': 'feats[-1]'}),

``kind='synthesize'`` runs the config's ``synthesis`` section (:mod:`densekd.synthesis`: a dataset synthesised from
a frozen teacher, DeepInversion / BNS / Inception / Gaussian) instead of training; its images file is
``{NAME.data}`` (``<stage work dir>/images.h5``), which a later stage reads as ``data.train.path``::

    dict(name='synth', kind='synthesize', config='configs/cifar100/data_free/synthesis/deepinversion_resnet32x4.py',
         cfg_options={'synthesis.teacher.checkpoint': '{teacher.best}'}),
    dict(name='student', config='configs/cifar100/data_free/resnet32x4-resnet8x4/kd.py',
         cfg_options={'teacher.checkpoint': '{teacher.best}', 'data.train.path': '{synth.data}'}),

A relative ``config`` is looked up from the current directory, the pipeline file's
directory, then the project root (the folder holding the pipeline file's ``configs/``).

``cfg_options`` is a list of ``'key=value'`` strings (as ``--cfg-options`` takes them) or a dict
``{key: value}`` of literals. Options apply in this order: the pipeline's, the stage's, then the
command line's; then ``--seed``, ``--data-root`` and ``--synthetic`` as ``tools/train.py`` applies them.
Values of a stage's own options may reference earlier stages (see :mod:`densekd.pipelines.refs`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densekd.config import Config, ConfigError, apply_overrides, config_name, load_config, parse_override_value
from densekd.engine.builder import config_data_folders, data_roots, set_data_root, shared_root_error, use_synthetic
from densekd.engine.launch import USER_ERRORS
from densekd.engine.schema import validate
from densekd.pipelines import refs
from densekd.registry import did_you_mean

PIPELINE_KEYS = {"stages", "cfg_options", "work_dir", "description"}
STAGE_KEYS = {"name", "config", "cfg_options", "description", "kind", "checkpoint"}
STAGE_KINDS = ("train", "probe", "synthesize")
STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class PipelineError(ConfigError):
    """A pipeline config that cannot run: reported in one line before (or as) a stage starts."""


@dataclass
class Option:
    """One ``key=value`` setting; ``text`` when it came as a string, else a Python value from a dict."""

    key: str
    value: Any
    text: bool
    source: str
    scope: str  # 'pipeline', 'stage' or 'cli'

    def item(self, value: Any) -> str:
        """The ``--cfg-options`` item that sets ``value`` (the reference-free form of ``self.value``)."""
        return f"{self.key}={value}" if self.text else f"{self.key}={value!r}"


@dataclass
class Stage:
    name: str
    index: int
    config: str  # as written in the pipeline file
    config_path: Path  # the file it names
    work_dir: Path
    options: list[Option] = field(default_factory=list)
    description: str = ""
    cfg: Config | None = None  # resolved and validated at start-up
    kind: str = "train"  # 'train', 'probe' or 'synthesize'
    checkpoint: Option | None = None  # a probe stage's checkpoint (as written, references unresolved)
    checkpoint_path: str | None = None  # ... resolved
    data_folders: dict[str, list[str]] = field(default_factory=dict)  # real dataset type -> its config's roots

    def references(self, all_options: list[Option]) -> list[tuple[str, str, Option]]:
        """Every reference of the stage: in its options and in a probe stage's ``checkpoint``."""
        own = [self.checkpoint] if self.checkpoint is not None else []
        return [(name, fld, opt) for opt in all_options + own for name, fld in refs.find(opt.value)]


@dataclass
class Pipeline:
    path: Path
    work_dir: Path
    stages: list[Stage]
    options: list[Option] = field(default_factory=list)  # pipeline-wide
    cli_options: list[Option] = field(default_factory=list)
    description: str = ""

    @property
    def shown_path(self) -> str:
        """The pipeline file, relative to the current directory when it lies under it."""
        try:
            return str(self.path.relative_to(Path.cwd()))
        except ValueError:
            return str(self.path)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise PipelineError(f"no stage {name!r} in {self.path}.{did_you_mean(name, self.names)} "
                            f"Stages: {', '.join(self.names)}")

    def options_of(self, stage: Stage) -> list[Option]:
        """Every option of ``stage`` in the order applied: pipeline-wide, the stage's, the command line's."""
        return self.options + stage.options + self.cli_options


# -- parsing ---------------------------------------------------------------------------------------
def parse_options(raw: Any, source: str, scope: str) -> list[Option]:
    """``['a.b=1', ...]`` or ``{'a.b': 1, ...}`` -> options; anything else is an error naming the forms."""
    forms = "a list of 'key=value' strings or a dict {'key': value}"
    if raw is None:
        return []
    if isinstance(raw, str):
        raise PipelineError(f"{source} must be {forms}; got the string {raw!r} (wrap it in a list: [{raw!r}])")
    out: list[Option] = []
    if isinstance(raw, (list, tuple)):
        for item in raw:
            if not isinstance(item, str) or "=" not in item:
                raise PipelineError(f"{source} must be {forms}; got the item {item!r} (write it as 'key=value')")
            key, _, value = item.partition("=")
            out.append(Option(key.strip(), value, True, source, scope))
        return out
    if isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str) or not key:
                raise PipelineError(f"{source}: keys are dotted config keys such as 'optimizer.lr'; got {key!r}")
            if not _plain_literal(value):
                raise PipelineError(f"{source}: the value of {key!r} must be a plain literal (numbers, strings, "
                                    f"None/True/False, lists, tuples, dicts of them); got {value!r}")
            out.append(Option(key, value, False, source, scope))
        return out
    raise PipelineError(f"{source} must be {forms}; got {type(raw).__name__} {raw!r}")


def _plain_literal(value: Any) -> bool:
    try:
        return parse_override_value(repr(value)) == value
    except Exception:  # noqa: BLE001 - anything that does not round-trip is not a literal
        return False


def _project_root(path: Path) -> Path | None:
    """The directory holding the ``configs/`` folder that ``path`` lives in, if any."""
    parts = path.parts
    if "configs" in parts:
        idx = len(parts) - 1 - parts[::-1].index("configs")
        return Path(*parts[:idx])
    return None


def find_config(arg: str, pipeline_path: Path, where: str) -> Path:
    """A stage's ``config``: absolute, else relative to the current directory, the pipeline file's
    directory, or the project root (the folder above the pipeline file's ``configs/``)."""
    p = Path(arg)
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, pipeline_path.parent / p]
        root = _project_root(pipeline_path)
        if root is not None:
            candidates.append(root / p)
    seen: list[Path] = []
    for c in candidates:
        c = c.resolve()
        if c.is_file():
            return c
        if c not in seen:
            seen.append(c)
    raise PipelineError(f"{where}: config file {arg!r} not found (looked for {', '.join(map(str, seen))})")


# -- loading ---------------------------------------------------------------------------------------
def load_pipeline(path: str | Path, *, cli_options: list[str] | tuple[str, ...] = (), work_dir: str | None = None,
                  seed: int | None = None, data_root=None, synthetic: bool = False,
                  only: list[str] | tuple[str, ...] = ()) -> Pipeline:
    """Load a pipeline config and check everything that can be checked before training: its keys,
    the stages' keys and unique names, references (only to earlier stages), ``--only`` names, and
    every stage's config (loaded with all its options applied, then validated). ``data_root``: one path for
    every stage, or one root per dataset type (:func:`~densekd.engine.builder.data_roots`)."""
    try:
        data_root = None if synthetic else data_roots(data_root)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"Pipeline config not found: {path}")
    try:
        raw = load_config(path)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    path = Path(raw.filename)
    for key in raw:
        if key not in PIPELINE_KEYS and not key.startswith("_"):
            raise PipelineError(f"Unknown pipeline key {key!r} in {path}.{did_you_mean(key, PIPELINE_KEYS)} "
                                f"Valid keys: {', '.join(sorted(PIPELINE_KEYS))}")
    stages_raw = stage_list(raw.get("stages"), path)

    if work_dir:
        root = Path(work_dir)
    elif raw.get("work_dir"):
        root = Path(raw["work_dir"])
    else:
        root = Path("work_dirs") / config_name(str(path))
        if seed is not None:
            root = root / f"seed{seed}"

    stages: list[Stage] = []
    for i, st in enumerate(stages_raw):
        where = f"{path} stage {i}"
        if not isinstance(st, dict):
            raise PipelineError(f"{where} must be dict(name=..., config=..., cfg_options=...); got {st!r}")
        if isinstance(st.get("name"), str):
            where = f"{path} stage {st['name']!r}"
        for key in st:
            if key not in STAGE_KEYS:
                raise PipelineError(f"{where}: unknown stage key {key!r}.{did_you_mean(key, STAGE_KEYS)} "
                                    f"Valid keys: {', '.join(sorted(STAGE_KEYS))}")
        for key in ("name", "config"):
            if not isinstance(st.get(key), str) or not st[key]:
                raise PipelineError(f"{where} needs `{key}=` (a string); got {st.get(key)!r}")
        name = st["name"]
        if not STAGE_NAME.match(name):
            raise PipelineError(f"{where}: stage names are letters, digits, '_' and '-' (they name the stage's "
                                f"work dir and appear in references such as {{{name}.best}}); got {name!r}")
        if name in [s.name for s in stages]:
            raise PipelineError(f"{path}: duplicate stage name {name!r} (stages {[s.name for s in stages].index(name)}"
                                f" and {i}); every stage needs its own name")
        options = parse_options(st.get("cfg_options"), f"{path} stage {name!r} cfg_options", "stage")
        kind = st.get("kind", "train")
        if kind not in STAGE_KINDS:
            raise PipelineError(f"{where}: kind must be one of {', '.join(map(repr, STAGE_KINDS))}; got {kind!r}."
                                f"{did_you_mean(str(kind), STAGE_KINDS)}")
        checkpoint = None
        if kind == "probe":
            if not isinstance(st.get("checkpoint"), str) or not st["checkpoint"]:
                raise PipelineError(f"{where}: a probe stage needs checkpoint= (the weights it probes, e.g. "
                                    f"'{{STAGE.best}}'); got {st.get('checkpoint')!r}")
            checkpoint = Option("checkpoint", st["checkpoint"], False, f"{path} stage {name!r} checkpoint", "stage")
        elif "checkpoint" in st:
            raise PipelineError(f"{where}: checkpoint= belongs to probe stages (kind='probe'); a training stage reads "
                                f"earlier checkpoints through cfg_options (e.g. 'load_from' or 'teacher.checkpoint')")
        stages.append(Stage(name=name, index=i, config=st["config"], config_path=Path(), work_dir=root / name,
                            options=options, description=str(st.get("description") or ""), kind=kind,
                            checkpoint=checkpoint))

    pipeline = Pipeline(path=path, work_dir=root, stages=stages,
                        options=parse_options(raw.get("cfg_options"), f"{path} cfg_options", "pipeline"),
                        cli_options=parse_options(list(cli_options), "--cfg-options", "cli"),
                        description=str(raw.get("description") or ""))
    for name in only:
        if name not in pipeline.names:
            raise PipelineError(f"--only {name}: no such stage in {path}.{did_you_mean(name, pipeline.names)} "
                                f"Stages: {', '.join(pipeline.names)}")
    for stage in stages:
        check_references(pipeline, stage)
    for stage in stages:
        stage.config_path = find_config(stage.config, path, f"{path} stage {stage.name!r}")
        stage.cfg = stage_config(pipeline, stage, seed=seed, data_root=data_root, synthetic=synthetic)
        check_teacher_models(pipeline, stage)
        if stage.kind == "probe":
            stage.checkpoint_path = refs.substitute(stage.checkpoint.value,
                                                    lambda n, f: resolve_reference(pipeline, n, f))
            check_probe_stage(stage)
        if stage.kind == "synthesize":
            check_synthesis_stage(stage)
    if data_root is not None:
        check_data_roots(pipeline, data_root)
    return pipeline


def check_data_roots(pipeline: Pipeline, roots: str | dict[str, str]) -> None:
    """One ``--data-root`` path cannot serve stages whose datasets live in different folders; a ``TYPE=PATH`` root
    must concern some stage."""
    folders: dict[str, list[str]] = {}
    readers: dict[str, list[str]] = {}
    for stage in pipeline.stages:
        for t, paths in stage.data_folders.items():
            folders.setdefault(t, [])
            folders[t] += [r for r in paths if r not in folders[t]]
            readers.setdefault(t, []).append(stage.name)
    if isinstance(roots, str):
        if not folders:
            raise PipelineError(f"--data-root {roots}: no stage of {pipeline.path} reads a dataset with a `root`")
        problem = shared_root_error(roots, folders, f"the pipeline {pipeline.path}", readers)
        if problem:
            raise PipelineError(problem)
        return
    unused = [t for t in roots if t not in folders]
    if unused:
        listing = "; ".join(f"{t} ({', '.join(names)})" for t, names in readers.items()) or "no real dataset"
        raise PipelineError(f"--data-root {' '.join(f'{t}={roots[t]}' for t in unused)}: no stage of "
                            f"{pipeline.path} reads {', '.join(unused)}; the stages read [{listing}]")


def stage_list(stages: Any, path: Path) -> list:
    """``stages`` as a list of stage dicts: a list as written, or a dict ``{name: stage}`` in order (the key is
    the name; ``None`` values, a child pipeline removing a stage of its ``_base_``, are dropped)."""
    if isinstance(stages, dict):
        out = []
        for name, st in stages.items():
            if st is None:
                continue
            where = f"{path} stage {name!r}"
            if not isinstance(st, dict):
                raise PipelineError(f"{where} must be dict(config=..., cfg_options=...) (or None to remove a stage of "
                                    f"the _base_ pipeline); got {st!r}")
            if "name" in st and st["name"] != name:
                raise PipelineError(f"{where}: in `stages = dict(NAME=dict(...))` the key is the stage's name; drop "
                                    f"name={st['name']!r} or make it {name!r}")
            out.append(dict(st, name=name))
        stages = out
    if not isinstance(stages, (list, tuple)) or not stages:
        raise PipelineError(f"{path} needs `stages = [dict(name=..., config=...), ...]` (a non-empty list, or a dict "
                            f"{{name: dict(config=...)}} in order); got {stages!r}")
    return list(stages)


def check_synthesis_stage(stage: Stage) -> None:
    """A synthesize stage's config has a valid ``synthesis`` section."""
    from densekd.synthesis.settings import SynthesisSettings

    try:
        SynthesisSettings.from_config(stage.cfg)
    except ConfigError as exc:
        raise PipelineError(f"stage {stage.name!r} ({stage.config}): {exc}") from None


def check_probe_stage(stage: Stage) -> None:
    """A probe stage's ``probe`` section, and its tap on the model (when the model can be built before the
    earlier stages have run: a ``pretrained=`` file they write is not there yet)."""
    from densekd.engine.builder import build_model
    from densekd.probe import ProbeSettings, resolve_tap

    where = f"stage {stage.name!r} ({stage.config})"
    try:
        settings = ProbeSettings.from_config(stage.cfg)
    except ConfigError as exc:
        raise PipelineError(f"{where}: {exc}") from None
    if not settings.layer:
        raise PipelineError(f"{where}: a probe stage needs a tap: cfg_options={{'probe.layer': 'feats[-1]'}} (or "
                            f"probe.layer in the config); python tools/list_taps.py CONFIG lists them")
    try:
        model = build_model(settings.model or stage.cfg["model"], where="probe model")
    except (FileNotFoundError, OSError):
        return
    try:
        resolve_tap(model, settings.layer)
    except LookupError as exc:
        raise PipelineError(f"{where}: {exc}") from None


def check_teacher_models(pipeline: Pipeline, stage: Stage) -> None:
    """A teacher whose checkpoint is an earlier stage's has that stage's model type."""
    made_by = {resolve_reference(pipeline, s.name, fld): (s, fld) for s in pipeline.stages[:stage.index]
               for fld in ("best", "last") if s.kind == "train" and s.cfg.get("model")}
    teachers = list(stage.cfg.get("teachers") or ([stage.cfg["teacher"]] if stage.cfg.get("teacher") else []))
    keys = ["teachers.%d" % i if stage.cfg.get("teachers") else "teacher" for i in range(len(teachers))]
    for net in ("teacher", "student"):  # a synthesis section's networks
        spec = (stage.cfg.get("synthesis") or {}).get(net)
        if isinstance(spec, dict) and isinstance(spec.get("model"), dict):
            teachers.append(spec)
            keys.append(f"synthesis.{net}")
    for key, t in zip(keys, teachers):
        ckpt = t.get("checkpoint")
        if not isinstance(ckpt, str) or ckpt not in made_by:
            continue
        src, fld = made_by[ckpt]
        want, got = src.cfg["model"].get("type"), t["model"].get("type")
        if want != got:
            raise PipelineError(f"stage {stage.name!r}: {key}.checkpoint is {{{src.name}.{fld}}}, weights of a "
                                f"{want!r} (the model of stage {src.name!r}), but {key}.model.type is {got!r}; "
                                f"set {key}.model to {src.cfg['model']}")


def check_references(pipeline: Pipeline, stage: Stage) -> None:
    """Every reference of ``stage`` names an earlier stage and a known field."""
    names = pipeline.names
    earlier = names[:stage.index]
    readable = ", ".join(earlier) if earlier else "none, it is the first stage"
    for name, fld, opt in stage.references(pipeline.options_of(stage)):
        ref = f"{{{name}.{fld}}}"
        if opt.scope != "stage":
            raise PipelineError(f"{opt.source}: {ref} applies to every stage, the first included, so it cannot "
                                f"reference a stage; put it in the cfg_options of the stage that reads it")
        if fld not in refs.FIELDS:
            raise PipelineError(f"{opt.source}: {ref}: unknown field {fld!r}.{did_you_mean(fld, refs.FIELDS)} "
                                f"A reference is {{STAGE.best}}, {{STAGE.last}}, {{STAGE.work_dir}} or {{STAGE.data}}")
        if name in earlier:
            source = pipeline.stage(name)
            if source.kind == "probe" and fld != "work_dir":
                raise PipelineError(f"{opt.source}: {ref}: stage {name!r} is a probe stage, which writes no "
                                    f"checkpoints (its results are {{{name}.work_dir}}/probe_summary.json); read the "
                                    f"checkpoint of the stage it probes instead")
            if source.kind == "synthesize" and fld in ("best", "last"):
                raise PipelineError(f"{opt.source}: {ref}: stage {name!r} is a synthesize stage, which writes no "
                                    f"checkpoints; its images are {{{name}.data}}")
            if fld == "data" and source.kind != "synthesize":
                raise PipelineError(f"{opt.source}: {ref}: only synthesize stages (kind='synthesize') write a data "
                                    f"file; stage {name!r} is a {source.kind} stage")
            continue
        if name == stage.name:
            raise PipelineError(f"{opt.source}: {ref} references stage {name!r} itself; a stage can only read "
                                f"earlier stages ({readable})")
        if name in names:
            raise PipelineError(f"{opt.source}: {ref} references stage {name!r}, which runs after {stage.name!r}; "
                                f"a stage can only read earlier stages ({readable}). Reorder `stages` so that "
                                f"{name!r} comes first")
        raise PipelineError(f"{opt.source}: {ref} names no stage of this pipeline.{did_you_mean(name, names)} "
                            f"Stages before {stage.name!r}: {readable}")


def resolve_reference(pipeline: Pipeline, name: str, fld: str) -> str:
    return str(refs.stage_path(pipeline.stage(name).work_dir, fld))


def stage_config(pipeline: Pipeline, stage: Stage, *, seed: int | None = None, data_root=None,
                 synthetic: bool = False) -> Config:
    """The stage's config with every option applied (references replaced by paths), then ``--seed``,
    ``--data-root`` and ``--synthetic`` as ``tools/train.py`` applies them, validated."""
    where = f"stage {stage.name!r} ({stage.config})"
    try:
        cfg = load_config(stage.config_path)
        for opt in pipeline.options_of(stage):
            value = refs.substitute(opt.value, lambda n, f: resolve_reference(pipeline, n, f))
            try:
                apply_overrides(cfg, [opt.item(value)])
            except ConfigError as exc:
                raise ConfigError(f"{opt.source}: {exc}") from None
            if opt.scope != "cli":  # errors then name the pipeline file and stage, not --cfg-options
                for k in cfg.sources:
                    if (k == opt.key or k.startswith(opt.key + ".")) and cfg.sources[k] == "--cfg-options":
                        cfg.sources[k] = opt.source
        if seed is not None:
            cfg["seed"] = seed
            cfg.sources["seed"] = "--seed"
        stage.data_folders = config_data_folders(cfg)
        if data_root:
            set_data_root(cfg, data_root, required=False)
        if synthetic:
            use_synthetic(cfg)
        validate(cfg)
    except PipelineError:
        raise
    except USER_ERRORS as exc:
        raise PipelineError(f"{where}: {exc}") from None
    return cfg
