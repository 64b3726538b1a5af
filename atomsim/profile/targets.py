"""What `atomsim profile --pipeline FILE` measures: every module the pipeline (and its variants)
names, each op at the shape its stages use, and the co-run of consecutive per-clip stages on
different modules (the lanes reuse-parallel runs side by side).

A module is keyed as plans key it (plan/builder.py `module_ref`): a zoo module by its model, any
other by the pipeline's name for it. A Hugging Face module's job carries its source (directory,
kind and content hash: a changed checkpoint is measured again, not resumed).
"""
from __future__ import annotations

from ..schema.ops import OPS


def module_key(pipeline, name: str) -> str:
    return pipeline.modules[name].builtin or name


def op_shape(stage, shape: dict) -> dict:
    """The keyword shape of a stage's op (its module's `example_inputs`), from the stage's args and
    the profiler's shape settings (`--frames`, `--beam`, ...)."""
    return shape_of(stage.op, "frames" in stage.inputs, stage.args, shape)


def shape_of(op: str, reads_frames: bool, args: dict, shape: dict) -> dict:
    """The one table of op shapes: what each op is profiled at."""
    out: dict = {}
    if reads_frames:
        out.update(frames=shape["frames"], frame_size=shape["frame_size"])
    if op == "caption":
        out.update(beam=int(args.get("beam", shape["beam"])), tokens=int(args.get("tokens", shape["tokens"])))
    elif op == "generate":
        out.update(prompt_tokens=shape["prompt_tokens"], tokens=int(args.get("tokens", shape["script_tokens"])))
    elif op == "embed":
        out.update(items=shape["items"], tokens=shape["tokens"])
    return out


def zoo_op_shapes(model: str, shape: dict) -> dict:
    """The ops of a zoo model and the shapes each is profiled with (the encoder reads frames)."""
    from ..schema.ops import builtin_ops
    return {op: shape_of(op, op == "encode", {}, shape) for op in builtin_ops(model)}


def pipeline_targets(pipeline, shape: dict, corun_threads=(1, 1)) -> dict:
    """{"models": keys, "sources": {key: source}, "op_shapes": {key: {op: shape}}, "pairs": [...]}.
    `pairs`: [backend-free co-run specs: a and b as (key, op, shape), threads]."""
    from ..models import hf
    variants = [pipeline, *(pipeline.with_variant(v) for v in pipeline.variants)]
    models: list[str] = []
    sources: dict[str, dict] = {}
    shapes: dict[str, dict] = {}
    pairs: list[dict] = []
    for p in variants:
        for name in p.used_modules():
            key = module_key(p, name)
            if key not in models:
                models.append(key)
            src = p.modules[name]
            if src.hf and key not in sources:
                path = p.module_path(name).resolve()
                sources[key] = {"hf": str(path), "kind": src.kind, "hash": hf.content_hash(path)}
            elif src.pte and key not in sources:
                from ..models.sources import manifest
                path = p.module_path(name).resolve()
                sources[key] = {"pte": str(path), "kind": src.kind, "manifest": str(manifest(p, name).resolve()),
                                "bytes": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
        for s in p.stages:
            if s.module and OPS[s.op].kinds:
                shapes.setdefault(module_key(p, s.module), {}).setdefault(s.op, op_shape(s, shape))
        clip_stages = [s for s in p.stages if s.per_clip and s.module]
        for a, b in zip(clip_stages, clip_stages[1:]):
            ka, kb = module_key(p, a.module), module_key(p, b.module)
            pair = {"a": [ka, a.op], "b": [kb, b.op], "threads": list(corun_threads)}
            if ka != kb and pair not in pairs:
                pairs.append(pair)
    return {"models": models, "sources": sources, "op_shapes": shapes, "pairs": pairs}
