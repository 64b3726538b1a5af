"""`atomsim profile import FILE --format F --as MODULE/BACKEND:OP --into PROFILE`: a phone tool's
figures into a profile. Adds or replaces the figures the file holds; records for each where it
came from (file and its sha256, tool and version, device, when) and which figures of the module
the source cannot supply, which stay empty (null) and make the simulator name them. The profile is
checked whole and then written atomically: a bad file never leaves it half-written."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, ProfileError, valid_names
from ..schema import names
from ..schema.profile import PROFILE_VERSION, Profile, load_profile, profile_from_mapping, save_profile
from .importers import ALL_FIGURES, Reading, bad, read


def backends() -> tuple:
    from ..models.executorch_backend import BACKENDS as ET
    from ..models.specs import BACKENDS
    return tuple(dict.fromkeys(names.BACKENDS + tuple(BACKENDS) + ET))


def known_modules(pipeline=None) -> dict[str, tuple[str, ...]]:
    """Module key -> its ops: the zoo's models, and with a pipeline its own modules (a zoo module
    it names is keyed by its model, as plans key it; another by the pipeline's name for it)."""
    from ..models.specs import OPS
    from ..schema.ops import ops_of_kinds
    known = {m: tuple(ops) for m, ops in OPS.items()}
    if pipeline is not None:
        variants = [pipeline.with_variant(v) for v in pipeline.variants]
        for p in (pipeline, *variants):
            for name, src in p.modules.items():
                known.setdefault(src.builtin or name, ops_of_kinds(src.kinds()))
    return known


def parse_target(text: str, pipeline=None) -> tuple[str, str, str]:
    """`MODULE/BACKEND:OP` -> (model, quant, op), each checked against the zoo's names and the
    modules `pipeline` names."""
    OPS = known_modules(pipeline)
    head, sep, op = text.partition(":")
    model, sep2, quant = head.partition("/")
    if not sep or not sep2:
        raise ConfigError(f"--as {text!r}: expected MODULE/BACKEND:OP, e.g. video-encoder/executorch-xnnpack:encode")
    if model not in OPS:
        hint = "" if pipeline is not None else " (a module of your own: give its pipeline with --pipeline FILE)"
        raise ConfigError(f"--as {text!r}: " + valid_names("module", model, OPS) + hint)
    if quant not in backends():
        raise ConfigError(f"--as {text!r}: " + valid_names("backend", quant, backends()))
    if op not in OPS[model]:
        raise ConfigError(f"--as {text!r}: " + valid_names(f"op of {model}", op, OPS[model]))
    return model, quant, op


def _new_profile(device: str | None) -> dict:
    return {"version": PROFILE_VERSION, "source": "measured", "created": _now(), "preset": None,
            "device": {"name": device} if device else {}, "baseline_rss_bytes": None, "modules": {},
            "method": {"imported": "assembled by atomsim profile import from phone tools' files"}}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _threads(reading: Reading, threads: int | None, path) -> dict:
    """latency_s keyed by thread count: the file's own counts, else --threads."""
    if None not in reading.latency_s:
        if threads is not None and threads not in reading.latency_s:
            raise bad(path, "n_threads", f"the file measured threads {sorted(reading.latency_s)}, not --threads {threads}")
        return {str(t): st for t, st in reading.latency_s.items()}
    if threads is None:
        raise bad(path, "threads", f"a {reading.tool} file does not record the thread count; pass --threads T "
                  "(the run's --cpu_threads)")
    if threads < 1:
        raise ConfigError(f"--threads {threads}: expected 1 or more")
    return {str(threads): reading.latency_s[None]}


def merge(data: dict, reading: Reading, target, path, device=None, threads=None) -> tuple[dict, list[str], list[str]]:
    """The profile mapping with the reading's figures in; (mapping, figures written, not in source)."""
    model, quant, op = target
    key = f"{model}/{quant}"
    mods = data.setdefault("modules", {})
    mod = mods.setdefault(key, {"model": model, "quant": quant, "file_bytes": None, "resident_bytes": None,
                                "load": {"cold_s": None, "warm_s": None}, "ops": {}})
    o = mod.setdefault("ops", {}).setdefault(op, {"latency_s": {}, "activation_peak_bytes": None})
    written = []
    for t, st in _threads(reading, threads, path).items():
        o["latency_s"][t] = st.model_dump()
        written.append(f"ops.{op}.latency_s.{t}")
    if reading.shape:
        o["shape"] = dict(o.get("shape") or {}, **reading.shape)
    if reading.activation_peak_bytes is not None:
        o["activation_peak_bytes"] = reading.activation_peak_bytes
        written.append(f"ops.{op}.activation_peak_bytes")
    for fld, value in (("cold_s", reading.cold_s), ("warm_s", reading.warm_s)):
        if value is not None:
            mod["load"][fld] = value.model_dump()
            written.append(f"load.{fld}")
    for fld in ("resident_bytes", "file_bytes"):
        if getattr(reading, fld) is not None:
            mod[fld] = getattr(reading, fld)
            written.append(fld)
    if reading.module_extra:
        mod.setdefault("tool_figures", {}).update(reading.module_extra)
    if reading.op_extra:
        o.setdefault("tool_figures", {}).update(reading.op_extra)
    lacking = [f.replace("op.", f"ops.{op}.") for f in ALL_FIGURES if f not in reading.supplied()]
    prov = {"file": str(Path(path).resolve()), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "tool": reading.tool, "tool_version": reading.tool_version, "device": device or reading.device,
            "imported": _now(), "not_in_source": [f for f in lacking if f != f"ops.{op}.latency_s"],
            "note": reading.note or None}
    for fig in written:
        mod.setdefault("imported", {})[fig] = prov
    if not written:
        raise bad(path, "*", "holds no figure atomsim can use")
    return data, written, prov["not_in_source"]


def import_file(path, fmt: str, target: str, into, device=None, threads=None, program=None,
                pipeline=None) -> tuple[Profile, list, list]:
    """Read `path`, merge it into the profile `into` (created when absent), write it atomically.
    `pipeline`: a Pipeline whose modules `target` may name besides the zoo's."""
    tgt = parse_target(target, pipeline)
    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file")
    reading = read(path, fmt, program=program)
    into = Path(into)
    if into.exists():
        load_profile(into)   # refuse a broken target before changing anything
        data = json.loads(into.read_text())
    else:
        data = _new_profile(device or reading.device)
    data, written, lacking = merge(data, reading, tgt, path, device=device, threads=threads)
    try:
        prof = profile_from_mapping(data, str(into))
    except ProfileError as e:
        raise ProfileError(f"importing {path} would make an invalid profile: {e}") from None
    save_profile(prof, into)
    return prof, written, lacking
