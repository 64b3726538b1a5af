"""Calibrated projection: the target's factors fitted by kind of work from the figures a source
profile and a calibration measured on the target share (`atomsim profile project --calibrate`).

    from atomsim.report.fit import fit, project_times
    f = fit(source, calibration)            # kinds: compute, decode, warm, storage (by thread count)
    times = project_times(source, f)        # {figure: (seconds on the target, rests on [figures])}

A figure is one time of a profile: `<model>/<quant>:<op>@<threads>` (an op's median latency),
`<model>/<quant>:load.warm` and `<model>/<quant>:load.storage` (cold minus warm load: the part
of a cold load that reads storage). Its kind of work:
- compute: encoders and prefill (`encode`, `embed`; `atomsim calibrate`'s `gemm.*` kernels),
- decode: decoding steps, memory-bound (`caption`; the `gemv.*` kernels),
- prefill+decode: `generate` (a script: a prompt prefill, then decoding): the geometric mean of
  the compute and decode factors, unless the calibration has figures of its own kind,
- warm: warm loads (deserialization from the page cache; the kernels' page-cache read),
- storage: the storage part of cold loads (the kernels' evicted read minus their cached read).
A projected cold load is the projected warm load plus the projected storage part.

A kind's factor at a thread count is the median of target / source over the shared figures of
that kind and thread count; missing there, the kind's factor at the nearest thread count; a kind
with no shared figure at all takes the median of every shared figure (`one-factor`, recorded).
`by_kind=False` is that naive one-factor method for everything (cold loads then scale whole).
"""
from __future__ import annotations

import math
import statistics

from ..errors import ConfigError

KERNELS = "reference-kernels"     # the model name of `atomsim calibrate`'s figures
OP_KINDS = {"encode": "compute", "embed": "compute", "caption": "decode", "generate": "prefill+decode"}
KINDS = ("compute", "decode", "prefill+decode", "warm", "storage")


def op_kind(op: str) -> str:
    if op.startswith("gemm"):
        return "compute"
    if op.startswith("gemv"):
        return "decode"
    return OP_KINDS.get(op, "compute")


def figures(profile, whole_cold: bool = False) -> dict:
    """{figure: (kind, threads or None, seconds, module key, per)} of a profile's times; `per` is what a
    ratio between two profiles compares them per: file bytes for loads (a calibration's scratch
    file may differ in size), the op's shape for ops (figures of different shapes are not shared)."""
    out = {}
    for key, mod in profile.modules.items():
        warm, cold = mod.load.warm_s.median, mod.load.cold_s.median
        size = mod.file_bytes or 1
        out[f"{key}:load.warm"] = ("warm", None, warm, key, size)
        if whole_cold:
            out[f"{key}:load.cold"] = ("cold", None, cold, key, size)
        elif cold > warm:
            out[f"{key}:load.storage"] = ("storage", None, cold - warm, key, size)
        for op_name, op in mod.ops.items():
            for t, st in op.latency_s.items():
                out[f"{key}:{op_name}@{t}"] = (op_kind(op_name), int(t), st.median, key, op.shape or {})
    return out


def shared(src: dict, cal: dict) -> dict:
    """{figure: target / source} over the figures both have (times > 0; loads per file byte; ops of one shape)."""
    out = {}
    for k in sorted(set(src) & set(cal)):
        a, b = src[k], cal[k]
        if a[2] <= 0 or b[2] <= 0:
            continue
        if isinstance(a[4], dict):
            if a[4] and b[4] and a[4] != b[4]:
                continue
            out[k] = b[2] / a[2]
        else:
            out[k] = (b[2] / b[4]) / (a[2] / a[4])
    return out


def mismatched_shapes(src: dict, cal: dict) -> list:
    return sorted(k for k in set(src) & set(cal) if isinstance(src[k][4], dict) and src[k][4] and cal[k][4]
                  and src[k][4] != cal[k][4])


def check_compatible(source, calibration, src_name="--from", cal_name="--calibrate") -> None:
    """A module calibration must be of the source's preset; kernel figures need kernels on both sides."""
    cal_models = {m.model for m in calibration.modules.values()}
    if cal_models - {KERNELS} and calibration.preset != source.preset:
        raise ConfigError(f"{cal_name}: field 'preset': the calibration is of preset {calibration.preset!r}, "
                          f"the source ({src_name}) of {source.preset!r}: calibrate with modules of the same preset")
    if KERNELS in cal_models and not any(m.model == KERNELS for m in source.modules.values()):
        raise ConfigError(f"{src_name}: lacks the {KERNELS} figures the calibration has: run `atomsim calibrate` "
                          f"on the source device too and pass it with --source-calibration")


def no_shared_message(src: dict, cal: dict, src_name: str, cal_name: str) -> str:
    mods = lambda f: ", ".join(sorted({v[3] for v in f.values()})) or "none"  # noqa: E731
    return (f"{cal_name}: shares no figure with {src_name}: the source has modules {mods(src)}; the calibration "
            f"has {mods(cal)} (same model, backend, op and thread count needed)")


def fit(source, calibration, by_kind: bool = True, src_name="--from", cal_name="--calibrate", exclude=()) -> dict:
    """{'groups': {(kind, threads): [figures]}, 'ratios': {figure: ratio}, 'all': median ratio, 'by_kind'}.
    `exclude`: calibration figures not to use (benchmarks/projection_error.py holds figures out)."""
    check_compatible(source, calibration, src_name, cal_name)
    src, cal = figures(source, not by_kind), figures(calibration, not by_kind)
    ratios = {k: v for k, v in shared(src, cal).items() if k not in set(exclude)}
    bad = mismatched_shapes(src, cal)
    if bad:
        raise ConfigError(f"{cal_name}: figures {', '.join(bad[:4])} have other shapes than in {src_name} "
                          "(one calibration --quick, the other not?): measure both alike")
    if not ratios:
        raise ConfigError(no_shared_message(src, cal, src_name, cal_name))
    groups: dict = {}
    for k in ratios:
        kind, t = src[k][0], src[k][1]
        groups.setdefault((kind, t), []).append(k)
    return {"groups": groups, "ratios": ratios, "all": statistics.median(ratios.values()), "by_kind": by_kind}


def factor(f: dict, kind: str, threads) -> tuple[float, list, str]:
    """(factor, calibration figures it rests on, how) for a figure of `kind` at `threads`."""
    if not f["by_kind"]:
        return f["all"], sorted(f["ratios"]), "one-factor"
    group = _group(f, kind, threads)
    if group is not None:
        keys = f["groups"][group]
        return statistics.median(f["ratios"][k] for k in keys), sorted(keys), f"{kind}@{group[1] or '-'}"
    if kind == "prefill+decode":
        parts = [(_group(f, k, threads), k) for k in ("compute", "decode")]
        found = [(g, k) for g, k in parts if g is not None]
        if found:
            vals = [statistics.median(f["ratios"][x] for x in f["groups"][g]) for g, _ in found]
            keys = sorted(x for g, _ in found for x in f["groups"][g])
            how = "geomean(" + ", ".join(f"{k}@{g[1]}" for g, k in found) + ")"
            return math.exp(statistics.fmean(math.log(v) for v in vals)), keys, how
    return f["all"], sorted(f["ratios"]), "one-factor (no calibration figure of its kind)"


def _group(f: dict, kind: str, threads):
    """The fitted (kind, threads) group for a figure: same thread count, else the nearest."""
    cands = [g for g in f["groups"] if g[0] == kind]
    if not cands:
        return None
    if threads is None:
        return next((g for g in cands if g[1] is None), cands[0])
    with_t = [g for g in cands if g[1] is not None]
    return min(with_t, key=lambda g: (abs(g[1] - threads), g[1])) if with_t else cands[0]


def project_times(source, f: dict) -> dict:
    """{figure: (projected seconds, rests on, how)} for every time of `source`: ops, warm and cold loads."""
    out = {}
    for key, mod in source.modules.items():
        warm, cold = mod.load.warm_s.median, mod.load.cold_s.median
        if f["by_kind"]:
            fw, on_w, how_w = factor(f, "warm", None)
            fs, on_s, how_s = factor(f, "storage", None)
            pw = warm * fw
            out[f"{key}:load.warm"] = (pw, on_w, how_w)
            out[f"{key}:load.cold"] = (pw + max(cold - warm, 0.0) * fs, sorted(set(on_w) | set(on_s)), f"{how_w} + {how_s}")
        else:
            fa, on, how = factor(f, "all", None)
            out[f"{key}:load.warm"] = (warm * fa, on, how)
            out[f"{key}:load.cold"] = (cold * fa, on, how)
        for op_name, op in mod.ops.items():
            for t, st in op.latency_s.items():
                x, on, how = factor(f, op_kind(op_name), int(t))
                out[f"{key}:{op_name}@{t}"] = (st.median * x, on, how)
    return out


def factor_table(f: dict) -> dict:
    """{'<kind>@<threads>': fitted factor} (or {'all': f} for one-factor), for the profile's method."""
    if not f["by_kind"]:
        return {"all": round(f["all"], 6)}
    return {f"{k}@{t or '-'}": round(statistics.median(f["ratios"][x] for x in keys), 6)
            for (k, t), keys in sorted(f["groups"].items(), key=lambda kv: (kv[0][0], kv[0][1] or 0))}
