"""Readable text of a profile (`atomsim profile show`) and of two profiles side by side
(`atomsim profile compare`, per-figure ratios in the manner of pyperf compare; significance by
pyperf's own t-test, as `pyperf compare_to` decides it)."""
from __future__ import annotations

from ..schema.profile import Profile, Stat
from .pyperf_io import significant


def mb(x) -> str:
    return "-" if x is None else f"{x / 1e6:.1f}"


def ms(st: Stat | None, imported=False) -> str:
    if st is None:
        return "-"
    flag = (" !" if st.unstable else "") + (" *" if imported else "")
    return f"{st.median * 1e3:.1f} ±{st.stdev * 1e3:.1f}{flag}"


def imported_sources(p: Profile) -> list[str]:
    """One line per imported figure: where it came from, and what its source lacked."""
    lines = []
    for k in sorted(p.modules):
        for fig, src in sorted(p.modules[k].imported.items()):
            lines.append(f"  * {k} {fig}: {src.tool}{' ' + src.tool_version if src.tool_version else ''} "
                         f"file {src.file} device {src.device or '(not in the file)'}"
                         + (f"; not in the source (left empty): {', '.join(src.not_in_source)}" if src.not_in_source else ""))
    return lines


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def device_lines(d: dict) -> list[str]:
    """The device: CPU, core types, engines, where the ops ran; a warning first when emulated."""
    emu = d.get("emulation") or {}
    out = [f"WARNING: measured under emulation ({'; '.join(emu.get('evidence') or [])}): no time in "
           "this profile says anything about a CPU"] if emu.get("emulated") else []
    engines = d.get("quantized_engines")
    if engines is not None:
        eng = (", ".join(f"{q} {e}" for q, e in sorted(engines.items())) or "none (fp32 only)") \
            + f"; torch's default {d.get('quantized_engine_default')}"
    else:  # profiles before issue 15: torch's default, read before atomsim switched
        eng = f"{d.get('quantized_engine')} (torch's default, maybe not the one used)"
    out.append(f"device: {d.get('cpu_model')} {d.get('arch')}, {d.get('cores')} cores, "
               f"RAM {mb(d.get('ram_total_bytes'))} MB (available {mb(d.get('ram_available_bytes'))} MB), "
               f"torch {d.get('torch')}, engines: {eng}")
    for c in d.get("core_types") or ():
        khz = "-".join(f"{x / 1e6:.2f}" for x in (c.get("min_freq_khz"), c.get("max_freq_khz")) if x)
        out.append(f"  cores {','.join(map(str, c['cpus']))}: {c['name']}" + (f" {khz} GHz" if khz else "")
                   + (f", capacity {c['cpu_capacity']}" if c.get("cpu_capacity") else ""))
    if d.get("ops_affinity") is not None:
        out.append(f"  ops ran with affinity {d['ops_affinity']}, threads seen on CPUs {d.get('ops_thread_cpus')}")
    return out


def format_profile(p: Profile) -> str:
    d = p.device
    out = [f"profile v{p.version} ({p.source}) preset={p.preset} created={p.created}", *device_lines(d),
           f"runtime baseline RSS {mb(p.baseline_rss_bytes)} MB; storage read "
           f"{'-' if p.storage_read_bytes_per_s is None else f'{p.storage_read_bytes_per_s / 1e6:.0f}'} MB/s; "
           f"memray {'yes' if p.memray else 'no'}; rank {p.pipeline_ops_s.get('rank', 0) * 1e3:.2f} ms", ""]
    rows = [["module", "file MB", "resident MB (anon/file)", "cold load ms", "warm load ms", "evicted",
             "transient MB [lo, hi]"]]
    for k in sorted(p.modules):
        m = p.modules[k]
        lo, hi = m.load.transient_bytes
        imp = m.imported
        rows.append([k, mb(m.file_bytes), f"{mb(m.resident_bytes)}{' *' if 'resident_bytes' in imp else ''} "
                     f"({mb(m.resident_anon_bytes)}/{mb(m.resident_file_bytes)})",
                     ms(m.load.cold_s, "load.cold_s" in imp), ms(m.load.warm_s, "load.warm_s" in imp),
                     str(m.load.cold_evicted), f"[{mb(lo)}, {mb(hi)}]"])
    out.append(table(rows))
    out.append("")
    rows = [["module:op", "threads", "median ms ±stdev", "p10-p90 ms", "n", "act. peak MB", "kept MB", "input KB", "shape"]]
    for k in sorted(p.modules):
        for op, o in sorted(p.modules[k].ops.items()):
            for t in o.threads():
                st = o.latency_s[str(t)]
                imp = p.modules[k].imported
                rows.append([f"{k}:{op}", str(t), ms(st, f"ops.{op}.latency_s.{t}" in imp),
                             f"{st.p10 * 1e3:.1f}-{st.p90 * 1e3:.1f}", str(st.n),
                             mb(o.activation_peak_bytes) + (" *" if f"ops.{op}.activation_peak_bytes" in imp else ""),
                             "-" if o.heap_retained_bytes is None else mb(o.heap_retained_bytes),
                             f"{o.input_bytes / 1e3:.1f}",
                             ",".join(f"{a}={b}" for a, b in sorted(o.shape.items()))])
    if len(rows) > 1:
        out.append(table(rows))
        out.append("")
    if p.corun:
        rows = [["co-run a", "co-run b", "threads", "slowdown a", "slowdown b"]]
        for c in p.corun:
            rows.append([c.a, c.b, f"{c.threads[0]}+{c.threads[1]}", f"{c.slowdown_a:.2f}x", f"{c.slowdown_b:.2f}x"])
        out.append(table(rows))
        out.append("")
    sources = imported_sources(p)
    if sources:
        out.append("imported figures (marked *; - where no source had the figure):")
        out.extend(sources)
        out.append("")
    warns = getattr(p, "warnings", None) or []
    if warns:
        out.append(f"unstable figures (stdev > 10% of mean, marked !): {len(warns)}")
        out.extend(f"  WARNING: {w}" for w in warns)
    return "\n".join(out).rstrip() + "\n"


def figures(p: Profile) -> dict:
    """Flat {figure name: (value, Stat or None)} of the comparable figures of a profile."""
    f = {"baseline_rss_bytes": (p.baseline_rss_bytes, None)}
    if p.storage_read_bytes_per_s:
        f["storage_read_bytes_per_s"] = (p.storage_read_bytes_per_s, None)
    for k, m in p.modules.items():
        for name, st in ((f"{k} load cold s", m.load.cold_s), (f"{k} load warm s", m.load.warm_s)):
            if st is not None:
                f[name] = (st.median, st)
        if m.resident_bytes is not None:
            f[f"{k} resident bytes"] = (m.resident_bytes, None)
        f[f"{k} transient high bytes"] = (m.load.transient_bytes[1], None)
        for op, o in m.ops.items():
            for t, st in o.latency_s.items():
                f[f"{k}:{op} @{t}t s"] = (st.median, st)
            if o.activation_peak_bytes is not None:
                f[f"{k}:{op} activation bytes"] = (o.activation_peak_bytes, None)
    for c in p.corun:
        f[f"corun {c.a} | {c.b} slowdown a"] = (c.slowdown_a, None)
        f[f"corun {c.a} | {c.b} slowdown b"] = (c.slowdown_b, None)
    return f


def compare(a: Profile, b: Profile, name_a="A", name_b="B") -> str:
    fa, fb = figures(a), figures(b)
    rows = [["figure", name_a, name_b, "B/A", ""]]
    only = []
    for k in sorted(set(fa) | set(fb)):
        if k not in fa or k not in fb:
            only.append(f"{k}: only in {'A' if k in fa else 'B'}")
            continue
        va, vb = fa[k][0], fb[k][0]
        ratio = vb / va if va else float("inf") if vb else 1.0
        if k.endswith(" s"):
            word = "same" if abs(ratio - 1) < 0.02 else (f"{ratio:.2f}x slower" if ratio > 1 else f"{1 / ratio:.2f}x faster")
            sa, sb = fa[k][1], fb[k][1]
            verdict = None if sa is None or sb is None else significant(sa, sb)
            word += {True: " (significant)", False: " (not significant)",
                     None: "" if sa is None or sb is None else " (untested)"}[verdict]
            fmt = lambda v: f"{v * 1e3:.2f} ms"  # noqa: E731
        elif "bytes" in k:
            word = ""
            fmt = lambda v: f"{v / 1e6:.1f} MB" if "per_s" not in k else f"{v / 1e6:.0f} MB/s"  # noqa: E731
        else:
            word, fmt = "", (lambda v: f"{v:.2f}")
        rows.append([k, fmt(va), fmt(vb), f"{ratio:.3f}", word])
    text = table(rows) + ("\n\nsignificance: pyperf's two-sample t-test at 95%, as `pyperf compare_to`; "
                          "untested where a side has one sample or the sample counts differ")
    if only:
        text += "\n\n" + "\n".join(only)
    return text + "\n"
