"""A profile as a pyperf suite (`atomsim profile export --pyperf FILE`), and pyperf's significance
test for `atomsim profile compare`.

Every sample series becomes one pyperf benchmark, written with pyperf's own API
(`pyperf.Run` -> `pyperf.Benchmark` -> `pyperf.BenchmarkSuite.dump`), so that
`python -m pyperf stats|hist|compare_to FILE` read it:

- `<model>/<quant> load cold` and `... load warm` (unit second; the load's warm-ups kept as
  pyperf warm-ups),
- `<model>/<quant>:<op> @<T>t` for each op at each thread count (second),
- `<model>/<quant> resident`, `... file`, `... load transient high`, `<model>/<quant>:<op>
  activation peak`, `baseline rss` (byte; one value each: the profile keeps no series of them).

A series is one pyperf run: the profile keeps its samples, not which process took each. A run's
`duration` is the sum of its timed samples and warm-ups (0 for a memory figure, which is a
reading, not timed work): without it pyperf would add up bytes as seconds.
pyperf refuses values <= 0: such figures (a zero activation peak, an empty load range), and the
figures an import left empty, are left out and listed in the suite's metadata (`atomsim_left_out`).
"""
from __future__ import annotations

import gzip
import math
from pathlib import Path

from ..errors import OutputError
from ..io import atomic_path
from ..schema.profile import Profile, Stat


def series(p: Profile) -> list[tuple[str, str, list[float], list[float]]]:
    """(name, unit, values, warmups) of every figure of a profile, in a fixed order."""
    out = []
    for k in sorted(p.modules):
        m = p.modules[k]
        for name, st in ((f"{k} load cold", m.load.cold_s), (f"{k} load warm", m.load.warm_s)):
            out.append((name, "second", st.samples if st else [], st.warmups if st else []))
        for op in sorted(m.ops):
            o = m.ops[op]
            for t in o.threads():
                st: Stat = o.latency_s[str(t)]
                out.append((f"{k}:{op} @{t}t", "second", st.samples, st.warmups))
        out.append((f"{k} resident", "byte", _one(m.resident_bytes), []))
        out.append((f"{k} file", "byte", _one(m.file_bytes), []))
        out.append((f"{k} load transient high", "byte", [m.load.transient_bytes[1]], []))
        for op in sorted(m.ops):
            out.append((f"{k}:{op} activation peak", "byte", _one(m.ops[op].activation_peak_bytes), []))
    out.append(("baseline rss", "byte", _one(p.baseline_rss_bytes), []))
    return out


def _one(value) -> list:
    """A single figure as a series; none where the profile has no figure (an import left it empty)."""
    return [] if value is None else [value]


def _suite_metadata(p: Profile) -> dict:
    meta = {"atomsim_profile_version": p.version, "atomsim_source": p.source}
    for key, value in (("atomsim_preset", p.preset), ("atomsim_created", p.created),
                       ("cpu_model_name", p.device.get("cpu_model")), ("platform", p.device.get("os")),
                       ("atomsim_device", p.device.get("name"))):
        if isinstance(value, str) and value.strip() and "\n" not in value:
            meta[key] = value.strip()
    return meta


def to_suite(p: Profile):
    """(pyperf.BenchmarkSuite, names left out because a value is <= 0)."""
    import pyperf
    benches, left_out = [], []
    for name, unit, values, warmups in series(p):
        if not values or min(values) <= 0 or (warmups and min(warmups) < 0):
            left_out.append(name)
            continue
        duration = math.fsum(values) + math.fsum(warmups) if unit == "second" else 0.0
        run = pyperf.Run([float(v) for v in values], warmups=[(1, float(w)) for w in warmups] or None,
                         metadata={"name": name, "unit": unit, "duration": duration}, collect_metadata=False)
        benches.append(pyperf.Benchmark([run]))
    if not benches:
        raise OutputError("the profile has no figure above zero: nothing to write as a pyperf suite")
    suite = pyperf.BenchmarkSuite(benches)
    meta = _suite_metadata(p)
    if left_out:
        meta["atomsim_left_out"] = "; ".join(left_out)
    for b in suite:
        b.update_metadata(meta)
    return suite, left_out


def export_pyperf(p: Profile, path) -> tuple[int, list[str]]:
    """Write the profile as a pyperf JSON suite (gzip when `path` ends in .gz), atomically.
    Returns (benchmarks written, names left out)."""
    suite, left_out = to_suite(p)
    path = Path(path)
    gz = path.name.endswith(".gz")
    with atomic_path(path, suffix=".json.gz" if gz else ".json") as tmp:
        with (gzip.open(tmp, "wt", encoding="utf-8") if gz else open(tmp, "w", encoding="utf-8")) as fp:
            suite.dump(fp, compact=False)
    return len(suite), left_out


def significant(a: Stat, b: Stat) -> bool | None:
    """pyperf compare_to's verdict: Student's two-sample two-tailed t-test at 95%, pyperf's own
    `is_significant`. None where pyperf cannot test: a single sample on a side, different sample
    counts (pyperf's t-score needs equal counts: compare_to prints "ERROR when testing if values
    are significant"), or two constant series."""
    if a.n < 2 or b.n < 2 or a.n != b.n:
        return None
    from pyperf._utils import is_significant
    try:
        return bool(is_significant(a.samples, b.samples)[0])
    except (ValueError, ZeroDivisionError):
        return None
