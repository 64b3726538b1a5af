"""Memory budget report (the paper's Table 8 for any combination): peak RAM and its breakdown per
device × preset × quantization × policy, the headroom against each device's RAM, fits or not.

    rows = memory_rows(devices=["pixel_5a"], presets=["paper"], quants=["torchao-int8"],
                       policies=["reload", "reuse-parallel"], task="assembly", clips=5)
    write_memory_report(rows, "out/memory")       # memory.md, memory.html (self-contained, inline SVG)

The peak is what the pipeline needs: each combination is simulated with the RAM limit lifted (so
that an out-of-memory event does not cut the run short), then compared with the device's RAM.
Profiles: the `--profile` files (one whose preset and device match the combination is preferred;
else one of the preset from another device: bytes do not depend on the device), else
`profiles/<preset>-<device>.json` or `profiles/<device>-<preset>.json`.
"""
from __future__ import annotations

import html
from pathlib import Path

from ..errors import AtomsimError
from ..io import atomic_write_text
from ..schema.trace import BREAKDOWN

GB = 1e9
UNLIMITED_RAM = 10 ** 15
COLORS = {"weights": "#4e79a7", "inputs": "#f28e2b", "activations": "#e15759", "load_temporaries": "#76b7b2",
          "baseline": "#9c9c9c"}
LABELS = {"weights": "weights", "inputs": "inputs", "activations": "activations",
          "load_temporaries": "load temporaries", "baseline": "runtime baseline"}


def default_profiles_dir() -> Path:
    cwd = Path.cwd() / "profiles"
    return cwd if cwd.is_dir() else Path(__file__).resolve().parents[2] / "profiles"


def _pick_profile(device: str, preset: str, profiles: list, profiles_dir: Path):
    """(Profile, path) for device and preset, or (None, reason)."""
    from ..schema.profile import load_profile
    same_preset = [(p, path) for p, path in profiles if p.preset in (preset, None)]
    for p, path in same_preset:
        if p.device.get("name") == device:
            return p, path
    if same_preset:
        return same_preset[0]
    if profiles:
        return None, f"no {preset} profile among --profile files ({', '.join(str(x[1]) for x in profiles)})"
    names = [profiles_dir / f"{preset}-{device}.json", profiles_dir / f"{device}-{preset}.json"]
    for n in names:
        if n.exists():
            return load_profile(n), n
    return None, f"no {preset} profile for {device}: looked for {', '.join(str(n) for n in names)} (give --profile FILE)"


def missing_in_profile(plan, profile) -> list[str]:
    """Modules and ops the plan needs that the profile lacks, as 'model/quant' or 'model/quant:op'."""
    missing = []
    for ref in sorted(set(plan.instances.values()), key=lambda r: r.key):
        if ref.key not in profile.modules:
            missing.append(ref.key)
    for s in plan.steps:
        if s.kind == "run" and s.instance is not None:
            ref = plan.instances[s.instance]
            if ref.key in profile.modules and s.op not in profile.modules[ref.key].ops:
                k = f"{ref.key}:{s.op}"
                if k not in missing:
                    missing.append(k)
    return missing


def memory_rows(devices, presets, quants, policies, task="assembly", clips=5, profile_files=(), pipeline=None,
                profiles_dir: str | Path | None = None, simulate=None) -> list[dict]:
    from ..plan import make_plan
    from ..schema.profile import load_profile
    from ..schema.scenario import load_devices, scenario_from_mapping
    from ..sim.engine import uncharged_baseline
    if simulate is None:
        from ..sim import simulate
    catalog = load_devices()
    profiles = [(load_profile(p), Path(p)) for p in profile_files]
    pdir = Path(profiles_dir) if profiles_dir else default_profiles_dir()
    rows = []
    for dev in devices:
        if dev not in catalog:
            from ..errors import ConfigError, valid_names
            raise ConfigError("--devices: " + valid_names("device", dev, catalog))
        for preset in presets:
            prof, where = _pick_profile(dev, preset, profiles, pdir)
            for quant in quants:
                for pol in policies:
                    row = {"device": dev, "preset": preset, "quant": quant, "policy": pol,
                           "ram_bytes": catalog[dev].ram_bytes, "profile": str(where) if prof else "",
                           "error": "" if prof else where}
                    rows.append(row)
                    if prof is None:
                        continue
                    try:
                        what = {"pipeline": str(pipeline), "workload": {"clips": clips}} if pipeline else \
                            {"workload": {"task": task, "clips": clips}}
                        sc = scenario_from_mapping({"name": f"{dev}-{preset}-{quant}-{pol}", "device": dev, **what,
                                                    "models": {"preset": preset, "quant": quant}, "policy": pol}, "report")
                        sc = sc.with_changes(**{"device.ram_bytes": UNLIMITED_RAM})
                        missing = missing_in_profile(make_plan(sc), prof)
                        if missing:
                            row["error"] = f"profile {where} lacks {', '.join(missing)}"
                            continue
                        s = simulate(sc, prof).summary
                    except AtomsimError as e:
                        row["error"] = " | ".join(str(e).splitlines())
                        continue
                    row.update(peak_bytes=int(s["peak_bytes"]), e2e_s=float(s["e2e_s"]),
                               breakdown={k: int(s["breakdown_bytes"].get(k, 0)) for k in BREAKDOWN})
                    # what a RAM limit charges: the peak less the runtime's shared-library pages
                    # (docs/running.md "RAM limits"; proven against real runs in docs/fidelity-ram.md)
                    row["charged_peak_bytes"] = row["peak_bytes"] - uncharged_baseline(prof)
                    row["headroom_bytes"] = row["ram_bytes"] - row["charged_peak_bytes"]
                    row["fits"] = row["headroom_bytes"] >= 0
    return rows


def _gb(b) -> str:
    return f"{b / GB:.2f}"


def to_markdown(rows, title="Memory budget") -> str:
    head = ["device", "preset", "quant", "policy", "peak GB", *(LABELS[k] + " GB" for k in BREAKDOWN),
            "RAM GB", "headroom GB", "fits"]
    lines = [f"# {title}", "", "Peak RAM the pipeline needs (simulated with the limit lifted), its breakdown, "
             "and the headroom against the device's RAM: the RAM less what a limit charges of the peak (the peak "
             "less the runtime's shared-library pages, where the profile measured them). Where these figures come "
             "from: the profiles named below, replayed by the simulator; how far its fit/out-of-memory predictions "
             "hold against real runs under RAM limits: docs/fidelity-ram.md in the atomsim repository.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["error"]:
            continue
        lines.append("| " + " | ".join([r["device"], r["preset"], r["quant"], r["policy"], _gb(r["peak_bytes"]),
                                        *(_gb(r["breakdown"][k]) for k in BREAKDOWN), _gb(r["ram_bytes"]),
                                        _gb(r["headroom_bytes"]), "yes" if r["fits"] else "**no**"]) + " |")
    bad = [r for r in rows if r["error"]]
    if bad:
        lines += ["", "## Not simulated", ""]
        lines += [f"- {r['device']} / {r['preset']} / {r['quant']} / {r['policy']}: {r['error']}" for r in bad]
    return "\n".join(lines) + "\n"


def svg_chart(rows) -> str:
    ok = [r for r in rows if not r["error"]]
    if not ok:
        return "<p>No combination could be simulated.</p>"
    bw, gap, left, top, h = 34, 14, 70, 30, 320
    rams = sorted({(r["ram_bytes"], r["device"]) for r in ok})
    vmax = max(max(r["peak_bytes"] for r in ok), max(b for b, _ in rams)) * 1.1
    width = left + len(ok) * (bw + gap) + 230
    longest = max(len(" ".join((r["device"], r["preset"], r["quant"], r["policy"]))) for r in ok)
    y = lambda v: top + h - v / vmax * h  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{top + h + 30 + 5 * longest}" '
           f'font-family="sans-serif" font-size="11" role="img" aria-label="peak memory per combination">']
    step = max(1, round(vmax / GB / 6))
    for g in range(0, int(vmax / GB) + 1, step):
        out.append(f'<line x1="{left}" x2="{left + len(ok) * (bw + gap)}" y1="{y(g * GB):.1f}" y2="{y(g * GB):.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{y(g * GB) + 4:.1f}" text-anchor="end">{g} GB</text>')
    for i, r in enumerate(ok):
        x, acc = left + i * (bw + gap) + gap / 2, 0
        for k in BREAKDOWN:
            v = r["breakdown"][k]
            if v > 0:
                out.append(f'<rect x="{x:.1f}" y="{y(acc + v):.1f}" width="{bw}" height="{v / vmax * h:.1f}" fill="{COLORS[k]}">'
                           f'<title>{html.escape(r["device"])} {html.escape(r["policy"])}: {LABELS[k]} {_gb(v)} GB</title></rect>')
            acc += v
        label = html.escape(f'{r["device"]} {r["preset"]} {r["quant"]} {r["policy"]}')
        color = "#000" if r["fits"] else "#c00"
        out.append(f'<text transform="translate({x + bw / 2:.1f},{top + h + 8}) rotate(55)" fill="{color}">{label}</text>')
    for j, (ram, dev) in enumerate(rams):
        out.append(f'<line x1="{left}" x2="{left + len(ok) * (bw + gap)}" y1="{y(ram):.1f}" y2="{y(ram):.1f}" '
                   f'stroke="#333" stroke-dasharray="6 3"/><text x="{left + len(ok) * (bw + gap) + 4}" '
                   f'y="{y(ram) + 4 + 12 * (j % 2):.1f}">{html.escape(dev)} RAM {_gb(ram)} GB</text>')
    lx = left + len(ok) * (bw + gap) + 4
    for j, k in enumerate(BREAKDOWN):
        out.append(f'<rect x="{lx}" y="{top + 150 + 16 * j}" width="10" height="10" fill="{COLORS[k]}"/>'
                   f'<text x="{lx + 14}" y="{top + 159 + 16 * j}">{LABELS[k]}</text>')
    out.append("</svg>")
    return "\n".join(out)


def to_html(rows, title="Memory budget") -> str:
    cells = []
    for r in rows:
        if r["error"]:
            cells.append(f'<tr class="err"><td>{html.escape(r["device"])}</td><td>{html.escape(r["preset"])}</td>'
                         f'<td>{html.escape(r["quant"])}</td><td>{html.escape(r["policy"])}</td>'
                         f'<td colspan="10">{html.escape(r["error"])}</td></tr>')
            continue
        vals = [_gb(r["peak_bytes"]), *(_gb(r["breakdown"][k]) for k in BREAKDOWN), _gb(r["ram_bytes"]),
                _gb(r["headroom_bytes"])]
        cells.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in
                                      (r["device"], r["preset"], r["quant"], r["policy"], *vals))
                     + f'<td class="{"yes" if r["fits"] else "no"}">{"yes" if r["fits"] else "no"}</td></tr>')
    head = ["device", "preset", "quant", "policy", "peak GB", *(LABELS[k] + " GB" for k in BREAKDOWN),
            "RAM GB", "headroom GB", "fits"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:nth-child(-n+4){{text-align:left}}
.no{{color:#c00;font-weight:bold}} .yes{{color:#080}} tr.err td{{color:#a60;text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Peak RAM each combination needs (simulated with the RAM limit lifted), stacked by category; dashed lines: each device's RAM.
Labels in red do not fit.</p>
{svg_chart(rows)}
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr></thead>
<tbody>{"".join(cells)}</tbody></table>
</body></html>
"""


def write_memory_report(rows, out_dir, title="Memory budget") -> list[Path]:
    out = Path(out_dir)
    atomic_write_text(out / "memory.md", to_markdown(rows, title))
    atomic_write_text(out / "memory.html", to_html(rows, title))
    return [out / "memory.md", out / "memory.html"]
