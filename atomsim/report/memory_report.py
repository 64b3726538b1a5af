"""Memory budget report (the paper's Table 8 for any combination): peak RAM and its breakdown per
device × preset × quantization × policy, the headroom against the app's budget, fits or not.

    rows = memory_rows(devices=["pixel_5a"], presets=["paper"], quants=["torchao-int8"],
                       policies=["reload", "reuse-parallel"], task="assembly", clips=5)
    write_memory_report(rows, "out/memory")       # memory.md, memory.html (self-contained, inline SVG)

What it assumes, each said in the report:
- The peak is what the pipeline needs: each combination is simulated with the RAM limit lifted
  (so that an out-of-memory event does not cut the run short).
- A runtime baseline is charged to every combination: the profile's measured one
  (`baseline_rss_bytes`), else the catalog's default for the device (`runtime_baseline_mb`; the
  published profiles have none: Table 8 gives none).
- "Fits" is against the app's budget: the device's RAM less what the OS keeps (`ram_gb` and
  `os_reserved_gb` in the catalog, atomsim/data/devices.yaml, with `memory_source` saying why),
  compared with what a RAM limit charges of the peak (the peak less the runtime's shared-library
  pages where the profile measured them; docs/running.md "RAM limits").
- Profiles: the `--profile` files (one whose preset and device match the combination is preferred;
  else one of the preset from another device, refused unless allowed: `--allow-device-mismatch`,
  schema/device_match.py), else `profiles/<preset>-<device>.json` or `profiles/<device>-<preset>.json`.
  Every row names its profile.
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


def with_baseline(profile, device):
    """(profile charged a runtime baseline, where it comes from): the profile's measured one, else
    the device's catalog default (a copy of the profile carrying it), else none (said so)."""
    if profile.baseline_rss_bytes:
        return profile, "measured (the profile's)"
    if device.runtime_baseline_bytes is not None:
        return (profile.model_copy(update={"baseline_rss_bytes": device.runtime_baseline_bytes}),
                f"catalog default for {device.name}")
    return profile, "none: the profile measured none and the catalog gives no default"


def pick_profiles(devices, presets, profiles, pdir, catalog, allow_device_mismatch: bool) -> dict:
    """{(device, preset): (profile or None, path or reason, device-mismatch note or None)}; a profile of
    another device is refused (ConfigError) unless allowed. Only bytes are used: an emulated profile is not refused."""
    from ..errors import ConfigError, valid_names
    from ..schema.device_match import check_device
    picks = {}
    for dev in devices:
        if dev not in catalog:
            raise ConfigError("--devices: " + valid_names("device", dev, catalog))
        for preset in presets:
            prof, where = _pick_profile(dev, preset, profiles, pdir)
            note = check_device(prof, catalog[dev], allow_device_mismatch, where, timing=False) if prof else None
            picks[(dev, preset)] = (prof, where, note)
    return picks


def _row(device, preset, quant, pol, prof, where, note) -> dict:
    from ..schema.device_match import describe_profile
    return {"device": device.name, "preset": preset, "quant": quant, "policy": pol, "ram_bytes": device.ram_bytes,
            "os_reserved_bytes": device.os_reserved_bytes, "budget_bytes": device.app_budget_bytes(),
            "profile": str(where) if prof else "", "profile_is": describe_profile(prof) if prof else "",
            "profile_source": prof.source if prof else "",
            "device_mismatch": note or "", "error": "" if prof else where}


def _simulate_row(row, sc, prof, device, simulate) -> None:
    """Simulate one combination into `row` (its figures, or its error)."""
    from ..plan import make_plan
    from ..sim.engine import uncharged_baseline
    missing = missing_in_profile(make_plan(sc), prof)
    if missing:
        row["error"] = f"profile {row['profile']} lacks {', '.join(missing)}"
        return
    charged, row["baseline_source"] = with_baseline(prof, device)
    s = simulate(sc, charged).summary
    row.update(peak_bytes=int(s["peak_bytes"]), e2e_s=float(s["e2e_s"]),
               breakdown={k: int(s["breakdown_bytes"].get(k, 0)) for k in BREAKDOWN})
    # what a RAM limit charges: the peak less the runtime's shared-library pages
    # (docs/running.md "RAM limits"; proven against real runs in docs/fidelity-ram.md)
    row["charged_peak_bytes"] = row["peak_bytes"] - uncharged_baseline(charged)
    row["headroom_bytes"] = row["budget_bytes"] - row["charged_peak_bytes"]
    row["fits"] = row["headroom_bytes"] >= 0


def memory_rows(devices, presets, quants, policies, task="assembly", clips=5, profile_files=(), pipeline=None,
                profiles_dir: str | Path | None = None, simulate=None, allow_device_mismatch: bool = False) -> list[dict]:
    from ..schema.profile import load_profile
    from ..schema.scenario import load_devices, scenario_from_mapping
    if simulate is None:
        from ..sim import simulate
    catalog = load_devices()
    profiles = [(load_profile(p), Path(p)) for p in profile_files]
    pdir = Path(profiles_dir) if profiles_dir else default_profiles_dir()
    picks = pick_profiles(devices, presets, profiles, pdir, catalog, allow_device_mismatch)
    what = {"pipeline": str(pipeline), "workload": {"clips": clips}} if pipeline else \
        {"workload": {"task": task, "clips": clips}}
    rows = []
    for dev in devices:
        for preset in presets:
            prof, where, note = picks[(dev, preset)]
            for quant in quants:
                for pol in policies:
                    row = _row(catalog[dev], preset, quant, pol, prof, where, note)
                    rows.append(row)
                    if prof is None:
                        continue
                    try:
                        sc = scenario_from_mapping({"name": f"{dev}-{preset}-{quant}-{pol}", "device": dev, **what,
                                                    "models": {"preset": preset, "quant": quant}, "policy": pol}, "report")
                        sc = sc.with_changes(**{"device.ram_bytes": UNLIMITED_RAM})
                        _simulate_row(row, sc, prof, catalog[dev], simulate)
                    except AtomsimError as e:
                        row["error"] = " | ".join(str(e).splitlines())
    return rows


def _gb(b) -> str:
    return f"{b / GB:.2f}"


HEAD = ["device", "preset", "quant", "policy", "profile", "peak GB", *(LABELS[k] + " GB" for k in BREAKDOWN),
        "RAM GB", "OS keeps GB", "app budget GB", "headroom GB", "fits"]
INTRO = ("Peak RAM the pipeline needs (simulated with the limit lifted), its breakdown, and the headroom against "
         "the app's budget: the device's RAM less what the OS keeps, less what a RAM limit charges of the peak (the "
         "peak less the runtime's shared-library pages, where the profile measured them). \"fits\" is against that "
         "budget only. Every combination is charged a runtime baseline: the profile's measured one, else the "
         "catalog's default for the device (see Assumptions). These are the simulator's figures from the profile "
         "each row names; how far its fit/out-of-memory predictions hold against real runs under RAM limits: "
         "docs/fidelity-ram.md in the atomsim repository.")


def profile_cell(r) -> str:
    """A row's profile: its file name, what it is when not measured, and a device mismatch if allowed."""
    cell = Path(r["profile"]).name
    if r.get("profile_source") in ("published", "projected"):   # says what it is in every row
        cell += f" ({r['profile_is']})"
    return cell + (" [another device's, allowed]" if r.get("device_mismatch") else "")


def row_cells(r) -> list[str]:
    return [r["device"], r["preset"], r["quant"], r["policy"], profile_cell(r), _gb(r["peak_bytes"]),
            *(_gb(r["breakdown"][k]) for k in BREAKDOWN), _gb(r["ram_bytes"]), _gb(r["os_reserved_bytes"]),
            _gb(r["budget_bytes"]), _gb(r["headroom_bytes"])]


def _shown(path) -> str:
    """A path as the report shows it: relative to the working directory when under it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def assumptions(rows) -> list[str]:
    """One line per device (its RAM, what the OS keeps, the default baseline, and why) and per
    profile (what it is, where its baseline comes from); the mismatches allowed."""
    from ..schema.scenario import load_devices
    catalog = load_devices()
    lines = []
    for name in dict.fromkeys(r["device"] for r in rows):
        d = catalog[name]
        base = "none" if d.runtime_baseline_bytes is None else f"{d.runtime_baseline_bytes / 1e6:.0f} MB"
        lines.append(f"- device {name}: RAM {_gb(d.ram_bytes)} GB, the OS keeps {_gb(d.os_reserved_bytes)} GB, app "
                     f"budget {_gb(d.app_budget_bytes())} GB; default runtime baseline {base}"
                     + (f". Source: {d.memory_source}" if d.memory_source else ". Source: none given in the catalog"))
    seen = {}
    for r in rows:
        if r["profile"] and "baseline_source" in r:
            seen.setdefault((r["profile"], r["device"]), (r["profile_is"], r["baseline_source"]))
    for (path, dev), (what, base) in seen.items():
        lines.append(f"- profile {_shown(path)} for {dev}: {what}; runtime baseline: {base}")
    for note in dict.fromkeys(r["device_mismatch"] for r in rows if r.get("device_mismatch")):
        lines.append(f"- WARNING (--allow-device-mismatch): {note}")
    return lines


def to_markdown(rows, title="Memory budget") -> str:
    lines = [f"# {title}", "", INTRO, "", "| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in rows:
        if not r["error"]:
            lines.append("| " + " | ".join(row_cells(r) + ["yes" if r["fits"] else "**no**"]) + " |")
    lines += ["", "## Assumptions", "", *assumptions(rows)]
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
    rams = sorted({(r["budget_bytes"], r["device"], r["ram_bytes"]) for r in ok})
    vmax = max(max(r["peak_bytes"] for r in ok), max(b for b, _, _ in rams)) * 1.1
    width = left + len(ok) * (bw + gap) + 300
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
    for j, (budget, dev, ram) in enumerate(rams):
        out.append(f'<line x1="{left}" x2="{left + len(ok) * (bw + gap)}" y1="{y(budget):.1f}" y2="{y(budget):.1f}" '
                   f'stroke="#333" stroke-dasharray="6 3"/><text x="{left + len(ok) * (bw + gap) + 4}" '
                   f'y="{y(budget) + 4 + 12 * (j % 2):.1f}">{html.escape(dev)} app budget {_gb(budget)} GB '
                   f'(RAM {_gb(ram)} GB)</text>')
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
                         f'<td colspan="{len(HEAD) - 4}">{html.escape(r["error"])}</td></tr>')
            continue
        cells.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row_cells(r))
                     + f'<td class="{"yes" if r["fits"] else "no"}">{"yes" if r["fits"] else "no"}</td></tr>')
    notes = "".join(f"<li>{html.escape(line[2:])}</li>" for line in assumptions(rows))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:nth-child(-n+5){{text-align:left}}
.no{{color:#c00;font-weight:bold}} .yes{{color:#080}} tr.err td{{color:#a60;text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{html.escape(INTRO)}</p>
<p>Peak RAM each combination needs, stacked by category; dashed lines: each device's app budget (its RAM less what
the OS keeps). Labels in red do not fit.</p>
{svg_chart(rows)}
<table><thead><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in HEAD)}</tr></thead>
<tbody>{"".join(cells)}</tbody></table>
<h2>Assumptions</h2><ul>{notes}</ul>
</body></html>
"""


def write_memory_report(rows, out_dir, title="Memory budget") -> list[Path]:
    out = Path(out_dir)
    atomic_write_text(out / "memory.md", to_markdown(rows, title))
    atomic_write_text(out / "memory.html", to_html(rows, title))
    return [out / "memory.md", out / "memory.html"]
