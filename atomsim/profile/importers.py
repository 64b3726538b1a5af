"""Readers of the files phone tools write: an ExecuTorch ETDump, Minibench's
`benchmark_results.json`, a Qualcomm AI Hub profile (`job.download_profile()` saved as JSON) and
llama-bench's `-o json|jsonl`. Each returns a `Reading`: the figures the file holds, in seconds
and bytes, and the figures it cannot supply (left empty by the import, never invented).

The field lists come from each tool's own source (docs/profiling-a-phone.md names them).
No torch at import time; the ETDump reader imports executorch.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..schema.profile import Stat

FORMATS = ("etdump", "minibench", "aihub", "llama-bench")
# what a figure path means in a module's profile entry (ModuleProfile)
ALL_FIGURES = ("file_bytes", "resident_bytes", "load.cold_s", "load.warm_s", "op.latency_s", "op.activation_peak_bytes")


@dataclass
class Reading:
    tool: str
    tool_version: str | None
    device: str | None
    latency_s: dict[int | None, Stat] = field(default_factory=dict)   # by threads; None: the file does not say
    cold_s: Stat | None = None
    warm_s: Stat | None = None
    resident_bytes: int | None = None
    activation_peak_bytes: int | None = None
    file_bytes: int | None = None
    module_extra: dict = field(default_factory=dict)   # figures the profile has no field for (kept, not simulated)
    op_extra: dict = field(default_factory=dict)
    shape: dict = field(default_factory=dict)
    note: str = ""

    def supplied(self) -> set[str]:
        got = {"op.latency_s"} if self.latency_s else set()
        for name, value in (("load.cold_s", self.cold_s), ("load.warm_s", self.warm_s),
                            ("resident_bytes", self.resident_bytes), ("file_bytes", self.file_bytes),
                            ("op.activation_peak_bytes", self.activation_peak_bytes)):
            if value is not None:
                got.add(name)
        return got


def bad(path, fld: str, why: str) -> ConfigError:
    return ConfigError(f"{path}: field {fld!r}: {why}")


def read(path, fmt: str, program=None) -> Reading:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown import format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "etdump":
        return read_etdump(path, program)
    data = _json(path, fmt)
    return {"minibench": read_minibench, "aihub": read_aihub, "llama-bench": read_llama_bench}[fmt](path, data)


# ------------------------------------------------------------------ JSON tools

def _json(path, fmt):
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a {fmt} file (not UTF-8 text: an ETDump? use --format etdump)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if fmt == "llama-bench":   # -o jsonl: one object per line
            try:
                return [json.loads(line) for line in text.splitlines() if line.strip()]
            except json.JSONDecodeError:
                pass
        raise ConfigError(f"{path}: malformed {fmt} file (JSON, line {e.lineno}: {e.msg})") from None


def looks_like(data) -> str | None:
    """Which tool's file a parsed JSON looks like."""
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else data
    if not isinstance(first, dict):
        return None
    if "execution_summary" in first:
        return "aihub"
    if "benchmarkModel" in first or "metric" in first and "actualValue" in first:
        return "minibench"
    if "avg_ns" in first or "samples_ns" in first:
        return "llama-bench"
    if "modules" in first and "version" in first:
        return "an atomsim profile"
    return None


def _wrong_tool(path, data, fmt, fld):
    seen = looks_like(data)
    hint = f"; it looks like {seen if ' ' in str(seen) else f'a {seen} file (--format {seen})'}" if seen else ""
    return bad(path, fld, f"missing: not a {fmt} file{hint}")


def _get(path, obj, key, where, kind=None):
    if not isinstance(obj, dict) or key not in obj or obj[key] is None:
        raise bad(path, f"{where}{key}", "missing")
    value = obj[key]
    if kind is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise bad(path, f"{where}{key}", f"expected {getattr(kind, '__name__', 'a number')}, got {value!r}")
    if kind in (NUM, int):
        figure(path, value, f"{where}{key}")
    return value


NUM = (int, float)


def figure(path, value, fld):
    """A tool's figure (a time, a size, a count): refused, naming the file and field, when it is not
    a finite number of 0 or more."""
    if isinstance(value, float) and not math.isfinite(value):
        raise bad(path, fld, f"not a finite number ({value})")
    if value < 0:
        raise bad(path, fld, f"negative ({value}); a time, size or count is 0 or more")
    return value


def _samples(values) -> bool:
    """A non-empty list of positive finite numbers."""
    return isinstance(values, list) and bool(values) and all(
        isinstance(v, NUM) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values)


def read_minibench(path, data) -> Reading:
    """Minibench's benchmark_results.json: a list of BenchmarkMetric objects (BenchmarkMetric.java:
    benchmarkModel{name, backend, quantization}, metric, actualValue, targetValue,
    deviceInfo{device, arch, os, totalMem, availMem}; metrics from ModelRunner.kt). Aggregates
    only: no samples, no thread count, no warm load."""
    if not isinstance(data, list) or not data or not isinstance(data[0], dict) or "metric" not in data[0]:
        raise _wrong_tool(path, data, "minibench", "[0].metric")
    metrics, names = {}, set()
    for i, m in enumerate(data):
        bm = _get(path, m, "benchmarkModel", f"[{i}].", dict)
        names.add(_get(path, bm, "name", f"[{i}].benchmarkModel.", str))
        metrics[_get(path, m, "metric", f"[{i}].", str)] = (i, _get(path, m, "actualValue", f"[{i}].", NUM))
    if len(names) > 1:
        raise bad(path, "benchmarkModel.name", f"holds {len(names)} models ({', '.join(sorted(names))}); "
                  "import a file of one model")
    dev = data[0].get("deviceInfo") or {}
    device = " ".join(str(dev[k]) for k in ("device", "arch", "os") if dev.get(k)) or None
    lat = metrics.get("avg_inference_latency(ms)") or metrics.get("trimmean_inference_latency(ms)")
    if lat is None:
        raise bad(path, "metric", "no 'avg_inference_latency(ms)' nor 'trimmean_inference_latency(ms)' entry")
    if "load_status" in metrics and metrics["load_status"][1] != 0:
        raise bad(path, f"[{metrics['load_status'][0]}].actualValue", f"load_status {metrics['load_status'][1]:g}: "
                  "the program failed to load on the device")
    r = Reading("minibench", None, device, latency_s={None: Stat.point(lat[1] / 1e3)},
                note="latency: Minibench's average over its iterations (their count is not in the file), n=1; "
                     "cold load: the app's Module.load + loadMethod (page cache state not recorded); resident: "
                     "PSS growth over the idle app after load and runs (Debug.getPss() - pssIdle)")
    if "model_load_time(ms)" in metrics:
        r.cold_s = Stat.point(metrics["model_load_time(ms)"][1] / 1e3)
    if "ram_pss_usage(mb)" in metrics:     # KiB / 1024: MiB
        r.resident_bytes = int(metrics["ram_pss_usage(mb)"][1] * (1 << 20))
    for k in ("token_per_sec", "generate_time(ms)", "trimmean_inference_latency(ms)"):
        if k in metrics:
            r.op_extra[f"minibench {k}"] = metrics[k][1]
    r.module_extra["minibench_model"] = {"name": next(iter(names)), "backend": data[0]["benchmarkModel"].get("backend"),
                                         "quantization": data[0]["benchmarkModel"].get("quantization")}
    return r


def _us_stat(summary, many, one, path, where):
    values = summary.get(many)
    if isinstance(values, list) and values:
        if not _samples(values):
            raise bad(path, f"{where}{many}", "expected a list of positive microseconds (finite numbers)")
        return Stat.of([v / 1e6 for v in values])
    if summary.get(one) is not None:
        return Stat.point(_get(path, summary, one, where, NUM) / 1e6)
    return None


def read_aihub(path, data) -> Reading:
    """A Qualcomm AI Hub profile (`job.download_profile()`): execution_summary with
    estimated_inference_time, first_load_time, warm_load_time (µs), their all_* sample lists,
    *_memory_increase_range / *_memory_peak_range [low, high] bytes; execution_detail per layer."""
    if not isinstance(data, dict) or "execution_summary" not in data:
        raise _wrong_tool(path, data, "aihub", "execution_summary")
    s = _get(path, data, "execution_summary", "", dict)
    where = "execution_summary."
    lat = _us_stat(s, "all_inference_times", "estimated_inference_time", path, where)
    if lat is None:
        raise bad(path, f"{where}estimated_inference_time", "missing")
    r = Reading("aihub", None, None, latency_s={None: lat},
                cold_s=_us_stat(s, "all_first_load_times", "first_load_time", path, where),
                warm_s=_us_stat(s, "all_warm_load_times", "warm_load_time", path, where))
    inc = s.get("inference_memory_increase_range")
    if isinstance(inc, list) and len(inc) == 2 and all(isinstance(v, NUM) for v in inc):
        figure(path, inc[1], f"{where}inference_memory_increase_range[1]")
        r.activation_peak_bytes = int(inc[1])   # the high end: memory the inference adds
    for k in ("inference_memory_peak_range", "first_load_memory_peak_range", "warm_load_memory_peak_range",
              "first_load_memory_increase_range", "warm_load_memory_increase_range", "estimated_inference_peak_memory"):
        if s.get(k) is not None:
            r.module_extra[f"aihub {k}"] = s[k]
    if isinstance(data.get("execution_detail"), list):
        r.op_extra["aihub layers"] = len(data["execution_detail"])
    r.note = "AI Hub's first load includes its on-device preparation of the model"
    return r


def _bench_row(path, row, i):
    for k in ("n_prompt", "n_gen", "n_threads"):
        _get(path, row, k, f"[{i}].", int)
    ns = row.get("samples_ns")
    if isinstance(ns, list) and ns and all(isinstance(v, NUM) for v in ns) and not _samples(ns):
        raise bad(path, f"[{i}].samples_ns", "expected a list of positive nanoseconds (finite numbers)")
    if _samples(ns):
        return Stat.of([v / 1e9 for v in ns])
    return Stat.point(_get(path, row, "avg_ns", f"[{i}].", NUM) / 1e9)


def read_llama_bench(path, data) -> Reading:
    """llama-bench -o json (a list) or jsonl: per test n_prompt, n_gen, n_threads, avg_ns,
    stddev_ns, samples_ns, model_type, model_size, cpu_info, build_commit, build_number. A prompt
    test (pp) and a generation test (tg) at the same threads make one op: prefill then decode
    (sample i of each added). No load time, no memory."""
    rows = data if isinstance(data, list) else [data]
    if not rows or not isinstance(rows[0], dict) or "avg_ns" not in rows[0]:
        raise _wrong_tool(path, data, "llama-bench", "[0].avg_ns")
    by_threads: dict[int, dict] = {}
    for i, row in enumerate(rows):
        st = _bench_row(path, row, i)
        kind = "pp" if row["n_gen"] == 0 else "tg" if row["n_prompt"] == 0 else "pg"
        by_threads.setdefault(row["n_threads"], {})[kind] = (st, row)
    lat, shape = {}, {}
    for t, kinds in sorted(by_threads.items()):
        if "pp" in kinds and "tg" in kinds:
            pp, tg = kinds["pp"][0].samples, kinds["tg"][0].samples
            n = min(len(pp), len(tg))
            lat[t] = Stat.of([pp[j] + tg[j] for j in range(n)])
            shape = {"prompt_tokens": kinds["pp"][1]["n_prompt"], "tokens": kinds["tg"][1]["n_gen"]}
        else:
            kind, (st, row) = next(iter(kinds.items()))
            lat[t] = st
            shape = {"prompt_tokens": row["n_prompt"], "tokens": row["n_gen"]}
    first = rows[0]
    version = "-".join(str(first[k]) for k in ("build_commit", "build_number") if first.get(k) is not None) or None
    device = " / ".join(str(first[k]) for k in ("cpu_info", "gpu_info") if first.get(k)) or None
    r = Reading("llama-bench", version, device, latency_s=lat, shape=shape)
    r.module_extra["llama-bench model"] = {k: first.get(k) for k in ("model_type", "model_size", "model_n_params",
                                                                     "backends") if first.get(k) is not None}
    return r


# ------------------------------------------------------------------ ETDump

def read_etdump(path, program=None) -> Reading:
    """An ETDump read with ExecuTorch's Inspector: block `Execute` holds `Method::execute` (one
    raw sample per execution), block `Default` `Program::load_method` and `Method::init`. Checked
    against the program it ran (`program`, a .pte) instruction by instruction. No memory: ExecuTorch
    plans activations ahead of time and the dump holds no RSS; no file read (only load_method)."""
    from executorch.devtools import Inspector
    from executorch.devtools.inspector import TimeScale
    try:
        ins = Inspector(etdump_path=str(path), source_time_scale=TimeScale.NS, target_time_scale=TimeScale.S)
    except Exception as e:   # flatbuffer parse errors of every kind
        raise ConfigError(f"{path}: not an ETDump ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    events = {b.name: {e.name: e for e in b.events} for b in ins.event_blocks}
    execute = events.get("Execute", {}).get("Method::execute")
    if execute is None or not execute.perf_data:
        raise bad(path, "Execute.Method::execute", "missing (was the program run with profiling on, "
                  "executor_runner --etdump_path?)")
    if program is not None:
        check_program(path, program, [e for b in ins.event_blocks if b.name == "Execute" for e in b.events])
    from importlib.metadata import version
    r = Reading("etdump", None, None, latency_s={None: Stat.of(execute.perf_data.raw)},
                note=f"read with executorch {version('executorch')} Inspector; load_method is not the file read")
    if program is not None:
        r.file_bytes = Path(program).stat().st_size   # the program the dump was checked against
    default = events.get("Default", {})
    load = [default[n].perf_data.raw for n in ("Program::load_method", "Method::init") if n in default and default[n].perf_data]
    if load:
        r.module_extra["etdump load_method_s"] = Stat.of(load[0]).model_dump()
    r.op_extra["etdump kernels"] = sorted(n for n in events.get("Execute", {}) if not n.startswith("Method::"))
    return r


def check_program(path, program, events) -> None:
    """Each profiled instruction of the dump must be the same kind of instruction in the program."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    try:
        pte = deserialize_pte_binary(Path(program).read_bytes())
    except Exception as e:
        raise ConfigError(f"{program}: not an ExecuTorch program (.pte): {type(e).__name__}") from None
    plan = next((p for p in pte.program.execution_plan if p.name == "forward"), pte.program.execution_plan[0])
    instrs = [type(i.instr_args).__name__ for c in plan.chains for i in c.instructions]
    for e in events:
        if e.name.startswith("Method::") or e._instruction_id is None:
            continue
        i = e._instruction_id
        want = "DelegateCall" if e.name == "DELEGATE_CALL" or e.delegate_debug_identifier is not None else "KernelCall"
        have = instrs[i] if i < len(instrs) else None
        if have != want:
            raise bad(path, f"Execute.{e.name}", f"instruction {i} is a {have or 'missing instruction'} in "
                      f"{program} ({len(instrs)} instructions), the dump ran a {want} there: an ETDump of "
                      "another program")
