"""Modules from anywhere: a pipeline's module (schema/pipeline.py ModuleSource) built into the
store, its weight files, and loaded. `builtin`: the zoo (preset from the scenario); `hf`: a
Hugging Face checkpoint directory (hf.py, by its kind); `pte`: an ExecuTorch program of one's own
with its manifest (pte_user.py)."""
from __future__ import annotations

from ..errors import ConfigError


def _source(pipeline, name):
    return pipeline.modules[name]


def manifest(pipeline, name):
    """A program's manifest path (schema.pipeline: its `manifest`, else `<program>.json`)."""
    return pipeline.manifest_path(name)


def build(pipeline, name, ref, preset, store) -> None:
    """Build the module's store entry if it is missing (or its checkpoint changed)."""
    from . import build as build_zoo, spec
    src = _source(pipeline, name)
    if src.builtin:
        build_zoo(preset, ref.model, ref.quant, store=store)
        spec(preset, ref.model)   # import the model's code now: lazy imports racing in lane threads fail
        return
    if src.pte:   # nothing to build: check its manifest now, import the runtime now
        from . import executorch_module  # noqa: F401
        from .pte_user import read_manifest
        read_manifest(pipeline.module_path(name), src.kind, manifest(pipeline, name))
        return
    from . import hf
    try:
        hf.check_kind(pipeline.module_path(name), src.kind)
    except ConfigError as e:   # name the pipeline's file and module, as its other errors do
        raise ConfigError(f"{pipeline.file or pipeline.name}: module {name!r}: {e}") from None
    hf.build(pipeline.module_path(name), src.kind, ref.quant, store)


def weight_files(pipeline, name, ref, preset, store) -> list:
    from . import weight_files as zoo_files
    src = _source(pipeline, name)
    if src.builtin:
        return zoo_files(preset, ref.model, ref.quant, store=store)
    if src.pte:
        return [pipeline.module_path(name)]
    from . import hf
    return hf.weight_files(pipeline.module_path(name), src.kind, ref.quant, store)


def load(pipeline, name, ref, preset, store):
    from . import load as load_zoo
    src = _source(pipeline, name)
    if src.builtin:
        return load_zoo(preset, ref.model, ref.quant, store=store)
    if src.pte:
        from .pte_user import load as load_program
        return load_program(pipeline.module_path(name), src.kind, manifest(pipeline, name))
    from . import hf
    return hf.load(pipeline.module_path(name), src.kind, ref.quant, store)
