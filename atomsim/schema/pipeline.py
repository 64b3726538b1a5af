"""Pipeline (YAML, `version: 1`): modules apart from the stages that use them, wired by name.

    version: 1
    name: clip-qa
    source: video
    modules:                               # loaded, kept or freed as a whole
      captioner: {hf: ckpt/vit-gpt2, kind: vision2seq}     # a checkpoint directory (relative to this file)
      embedder:  {builtin: sentence-encoder}               # the zoo (preset, quantization from the scenario)
      lm:        {hf: ckpt/my-llama, kind: causal-lm}
    stages:                                # `in` names workload values (frames, prompt, queries) or earlier `out`s
      - {name: caption, foreach: clip, module: captioner, op: caption, in: [frames], out: captions, args: {beam: 2}}
      - {name: index, foreach: request, module: embedder, op: embed, in: [captions], out: index}
      - ...

Optional per stage: `lane` (its lane under reuse-parallel; default: its module's name) and
`phase` (under reload, consecutive stages of one phase share the loads: default, the per-clip
stages form one phase and each per-request stage one of its own). `variants` name other
modules for some stages (the paper's baseline: a BERT captioner and a separate script Llama).
The op registry (ops.py) says which ops each module kind has. Errors name the file, the stage
and the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError, valid_names
from .names import MODELS
from .ops import BUILTIN_KINDS, CAPTION_TAKES, HF_KINDS, OPS, PTE_KINDS, SOURCE_TYPES, SOURCES, ops_of_kinds
from .validation import read_mapping, validate

PIPELINE_VERSION = 1
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "pipelines"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModuleSource(_Strict):
    builtin: str | None = None
    hf: str | None = None          # a Hugging Face checkpoint directory
    pte: str | None = None         # an ExecuTorch program
    manifest: str | None = None    # the program's manifest (default: beside it, <name>.json)
    kind: str | None = None

    @property
    def source(self) -> str:
        return "builtin" if self.builtin else ("hf" if self.hf else "pte")

    def kinds(self) -> tuple[str, ...]:
        return BUILTIN_KINDS[self.builtin] if self.builtin else (self.kind,)


class Stage(_Strict):
    name: str
    foreach: Literal["clip", "request"]
    module: str | None = None
    op: str
    inputs: list[str] = Field(alias="in")
    out: str
    args: dict[str, int | float | str] = {}
    lane: str | None = None
    phase: str | None = None

    @property
    def per_clip(self) -> bool:
        return self.foreach == "clip"


class Variant(_Strict):
    modules: dict[str, ModuleSource] = {}
    stages: dict[str, str] = {}     # stage name -> the module it uses in this variant


class Pipeline(_Strict):
    version: int
    name: str
    source: Literal["video"] = "video"
    modules: dict[str, ModuleSource]
    stages: list[Stage] = Field(min_length=1)
    variants: dict[str, Variant] = {}
    base_dir: str | None = Field(default=None, exclude=True)   # where relative module paths start
    file: str | None = Field(default=None, exclude=True)       # the file it was read from (errors name it)

    # ---- reading the graph
    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def producer(self, value: str) -> Stage | None:
        return next((s for s in self.stages if s.out == value), None)

    def per_clip_value(self, value: str) -> bool:
        if value in SOURCES:
            return value == "frames"
        p = self.producer(value)
        return p is not None and p.per_clip

    def used_modules(self) -> list[str]:
        """Modules some stage uses, in the order of `modules`."""
        used = {s.module for s in self.stages if s.module}
        return [m for m in self.modules if m in used]

    def uses_queries(self) -> bool:
        return any("queries" in s.inputs for s in self.stages)

    def manifest_path(self, name: str) -> Path:
        """A program module's manifest: its `manifest` (relative to this file), else `<program>.json`."""
        m = self.modules[name]
        return Path(self.base_dir or ".") / m.manifest if m.manifest else self.module_path(name).with_suffix(".json")

    def module_path(self, name: str) -> Path | None:
        src = self.modules[name]
        rel = src.hf or src.pte
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() or self.base_dir is None else Path(self.base_dir) / p

    def with_variant(self, name: str | None) -> "Pipeline":
        """The pipeline with variant `name`'s modules (None, or a variant it lacks: unchanged). A
        module no stage uses any more is replaced, in its place, by the variant's new modules."""
        if not name or name not in self.variants:
            return self
        v = self.variants[name]
        stages = [s.model_copy(update={"module": v.stages.get(s.name, s.module)}) for s in self.stages]
        used = {s.module for s in stages if s.module}
        new = [m for m in v.modules if m not in self.modules]
        modules: dict[str, ModuleSource] = {}
        for m, src in self.modules.items():
            if m in used:
                modules[m] = v.modules.get(m, src)
            elif new:
                modules.update({n: v.modules[n] for n in new})
                new = []
        modules.update({n: v.modules[n] for n in new})
        return self.model_copy(update={"modules": modules, "stages": stages, "variants": {}})


def check(p: Pipeline, source: str) -> Pipeline:
    """The wiring: refuse what no executor could run, naming the stage and the field."""
    if p.version != PIPELINE_VERSION:
        raise ConfigError(f"{source}: field 'version': pipeline version {p.version} is not known "
                          f"(this atomsim reads version {PIPELINE_VERSION})")
    for name, m in p.modules.items():
        _check_module(m, f"{source}: module {name!r}")
        _check_files(p, name, f"{source}: module {name!r}")
    for vname, v in p.variants.items():
        for name, m in v.modules.items():
            _check_module(m, f"{source}: variant {vname!r}: module {name!r}")
        for st, mod in v.stages.items():
            if st not in {s.name for s in p.stages}:
                raise ConfigError(f"{source}: variant {vname!r}: field 'stages': no stage {st!r}")
            if mod not in v.modules and mod not in p.modules:
                raise ConfigError(f"{source}: variant {vname!r}: stage {st!r}: no module {mod!r}")
    produced: dict[str, str] = {}
    later = {s.out: s.name for s in p.stages}
    names: set[str] = set()
    for i, s in enumerate(p.stages):
        where = f"{source}: stage {s.name!r}"
        if s.name in names or s.name == "decode":
            raise ConfigError(f"{where}: field 'name': {'reserved' if s.name == 'decode' else 'given twice'}")
        names.add(s.name)
        if s.per_clip and i and not p.stages[i - 1].per_clip:
            raise ConfigError(f"{where}: field 'foreach': the foreach-clip stages come first, before every "
                              f"foreach-request stage (stage {p.stages[i - 1].name!r} is foreach request)")
        if s.lane in ("video",):
            raise ConfigError(f"{where}: field 'lane': 'video' is the decoder's lane")
        _check_stage(p, s, where, produced, later)
        produced[s.out] = s.name
    for vname in p.variants:
        pv = p.with_variant(vname)
        for s in pv.stages:
            _check_op(pv, s, f"{source}: variant {vname!r}: stage {s.name!r}")
            _check_types(pv, s, f"{source}: variant {vname!r}: stage {s.name!r}")
    return p


def _check_module(m: ModuleSource, where: str) -> None:
    given = [k for k in ("builtin", "hf", "pte") if getattr(m, k)]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of 'builtin', 'hf', 'pte' (got {', '.join(given) or 'none'})")
    if m.builtin:
        if m.builtin not in MODELS:
            raise ConfigError(f"{where}: field 'builtin': " + valid_names("built-in module", m.builtin, MODELS))
        if m.kind and m.kind not in BUILTIN_KINDS[m.builtin]:
            raise ConfigError(f"{where}: field 'kind': {m.builtin} is a {' and '.join(BUILTIN_KINDS[m.builtin])}, not {m.kind!r}")
        return
    kinds = HF_KINDS if m.hf else PTE_KINDS
    if not m.kind:
        raise ConfigError(f"{where}: field 'kind': missing (one of {', '.join(kinds)})")
    if m.kind not in kinds:
        raise ConfigError(f"{where}: field 'kind': " + valid_names(f"kind of {m.source} module", m.kind, kinds))


def _check_files(p: Pipeline, name: str, where: str) -> None:
    """A checkpoint directory with its config.json, or a program file, where the module says."""
    m, path = p.modules[name], p.module_path(name)
    if m.hf and not (path / "config.json").is_file():
        what = "no such directory" if not path.is_dir() else "no config.json in it (a save_pretrained directory?)"
        raise ConfigError(f"{where}: field 'hf': {path}: {what}")
    if m.pte and not path.is_file():
        raise ConfigError(f"{where}: field 'pte': {path}: no such file")
    if m.pte:
        manifest = p.manifest_path(name)
        if not manifest.is_file():
            raise ConfigError(f"{where}: field 'manifest': {manifest}: no such file (a program's manifest says "
                              "what it takes: docs/pipelines.md)")


def _check_op(p: Pipeline, s: Stage, where: str) -> None:
    op = OPS.get(s.op)
    if op is None or s.op == "decode":
        raise ConfigError(f"{where}: field 'op': " + valid_names("op", s.op, [o for o in OPS if o != "decode"]))
    if not op.kinds:
        if s.module:
            raise ConfigError(f"{where}: field 'module': op {s.op!r} takes no module")
        return
    if not s.module:
        raise ConfigError(f"{where}: field 'module': op {s.op!r} needs a module (a {' or '.join(op.kinds)})")
    if s.module not in p.modules:
        raise ConfigError(f"{where}: field 'module': " + valid_names("module", s.module, p.modules))
    kinds = p.modules[s.module].kinds()
    if s.op not in ops_of_kinds(kinds):
        raise ConfigError(f"{where}: field 'op': a {' and '.join(kinds)} module has no op {s.op!r} "
                          f"(it has: {', '.join(ops_of_kinds(kinds))})")


def _check_stage(p: Pipeline, s: Stage, where: str, produced: dict, later: dict) -> None:
    _check_op(p, s, where)
    op = OPS[s.op]
    if op.per_clip is not None and op.per_clip != s.per_clip:
        raise ConfigError(f"{where}: field 'foreach': op {s.op!r} runs foreach {'clip' if op.per_clip else 'request'}")
    if s.out in SOURCES or s.out in produced:
        raise ConfigError(f"{where}: field 'out': {s.out!r} is already "
                          f"{'a workload value' if s.out in SOURCES else 'made by stage ' + repr(produced[s.out])}")
    if not s.inputs:
        raise ConfigError(f"{where}: field 'in': empty (name at least one value)")
    for v in s.inputs:
        if v == "frames" and not s.per_clip:
            raise ConfigError(f"{where}: field 'in': 'frames' are read by foreach-clip stages only")
        if v in SOURCES or v in produced:
            if s.per_clip and not p.per_clip_value(v):
                raise ConfigError(f"{where}: field 'in': {v!r} is one per request; a foreach-clip stage reads "
                                  "only per-clip values (frames, or outs of earlier foreach-clip stages)")
            continue
        if v in later:
            raise ConfigError(f"{where}: field 'in': {v!r} is made by stage {later[v]!r}, which does not come "
                              "before it (a cycle, or stages out of order)")
        raise ConfigError(f"{where}: field 'in': nothing produces {v!r} (workload values: "
                          f"{', '.join(SOURCES)}; outs: {', '.join(produced) or 'none yet'})")
    _check_types(p, s, where)


def value_type(p: Pipeline, value: str) -> str:
    """frames, features, text, vectors, ranking or video: what a value holds."""
    return SOURCE_TYPES[value] if value in SOURCE_TYPES else OPS[p.producer(value).op].makes


def _check_types(p: Pipeline, s: Stage, where: str) -> None:
    """Each input of the type its op reads (a caption: what its module's kind reads; a rank: query
    vectors, then candidate vectors)."""
    op = OPS[s.op]
    takes = op.takes
    if s.op == "caption" and s.module:
        takes = tuple(CAPTION_TAKES[k] for k in p.modules[s.module].kinds() if k in CAPTION_TAKES)
    for v in s.inputs:
        t = value_type(p, v)
        if t not in takes:
            raise ConfigError(f"{where}: field 'in': {v!r} holds {t}; op {s.op!r}"
                              f"{' of a ' + ' and '.join(p.modules[s.module].kinds()) if s.module else ''} reads "
                              f"{' or '.join(takes)}")
    if s.op == "rank" and len(s.inputs) != 2:
        raise ConfigError(f"{where}: field 'in': rank reads two values, the query vectors and the candidate "
                          f"vectors, got {len(s.inputs)}")


def pipeline_from_mapping(data: dict, source: str, base_dir: Path | None = None) -> Pipeline:
    p = validate(Pipeline, {**data, "base_dir": str(base_dir) if base_dir else None, "file": source}, source)
    return check(p, source)


def is_file_ref(ref) -> bool:
    """A pipeline file's path rather than a bundled pipeline's name."""
    return "/" in str(ref) or str(ref).endswith((".yaml", ".yml", ".json"))


def load_pipeline(ref: str | Path, base_dir: Path | None = None) -> Pipeline:
    """A bundled pipeline by name (`assembly`), or a pipeline file (relative to `base_dir`)."""
    ref_s = str(ref)
    if not is_file_ref(ref_s):
        path = BUNDLED / f"{ref_s}.yaml"
        if not path.exists():
            raise ConfigError(valid_names("bundled pipeline", ref_s, bundled_names()) + " (or a pipeline file's path)")
    else:
        path = Path(ref_s)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    data = read_mapping(path, "pipeline")
    return pipeline_from_mapping(data, str(path), path.parent)


def bundled_names() -> list[str]:
    return sorted(p.stem for p in BUNDLED.glob("*.yaml"))


_LOADED: dict[tuple, Pipeline] = {}


def scenario_pipeline(scenario) -> Pipeline:
    """The pipeline a scenario names (`pipeline`, else its workload's task), read once per file
    version (sweeps simulate one scenario many times)."""
    ref = scenario.pipeline or scenario.workload.task
    path = Path(ref) if is_file_ref(ref) else BUNDLED / f"{ref}.yaml"
    try:
        key = (str(path), path.stat().st_mtime_ns)
    except OSError:
        return load_pipeline(ref)       # names the missing file
    if key not in _LOADED:
        _LOADED[key] = load_pipeline(ref)
    return _LOADED[key]
