"""`atomsim simulate`. Imports nothing heavy at import time. (`atomsim demo`, the paper's
pipelines simulated: atomsim/demo.py.)"""
from __future__ import annotations

import sys
from pathlib import Path

from ..args import add_output_options
from ..schema.energy import DEVICE_RULES

PROGRESS_CLIPS = 2000   # plans of at least this many clips x requests show a progress bar (~2 s per policy)
OUTPUT_FILES = ("summary.json", "trace.json", "timeline.png")


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a scenario under one or more policies",
                       description="Simulate SCENARIO (YAML) under each --policy; write DIR/<policy>/"
                       "{summary.json,trace.json,timeline.png} and print a comparison table.")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--policy", action="append", metavar="P",
                   help="a policy to simulate: reload, reuse-serial, reuse-parallel, baseline-resident, or a budget "
                   "policy budget-lru, budget-cost, budget-belady, budget-optimal (repeatable; "
                   "default: reload, reuse-serial, reuse-parallel and the scenario's)")
    p.add_argument("--policies", dest="policy", action="extend", nargs="+", metavar="P",
                   help="several policies at once, as `report memory` takes them")
    p.add_argument("--profile", metavar="FILE", help="profile JSON (default: the scenario's `profile`)")
    p.add_argument("--clips", type=int, metavar="N", help="override the clip count")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-png", action="store_true", help="skip timeline.png")
    p.add_argument("--allow-profile-mismatch", action="store_true",
                   help="simulate even with a profile of another preset than the scenario's")
    p.add_argument("--allow-device-mismatch", action="store_true",
                   help="simulate even with a profile of another device than the scenario's, or one measured "
                   "under emulation (every summary and the screen then say so)")
    p.add_argument("--energy-rule", choices=DEVICE_RULES, default=None,
                   help="energy estimate: union (the paper's F.7: CPU power while any lane is busy) or per-core "
                   "(power per busy core); default: the device's (union for the catalog's devices)")
    add_output_options(p)
    p.set_defaults(func=cmd_simulate)



def _policies(requested, scenario_policy: str) -> list[str]:
    from ..errors import ConfigError, valid_names
    from ..schema.names import POLICIES
    pols = list(requested) if requested else ["reload", "reuse-serial", "reuse-parallel", scenario_policy]
    for p in pols:
        if p not in POLICIES:
            raise ConfigError(valid_names("policy", p, POLICIES))
    return list(dict.fromkeys(pols))


def run_policies(scenario, profile, policies, clips, out: Path | None, png: bool = True, also=(),
                 mark: dict | None = None, progress: bool | None = None) -> dict:
    """Simulate each policy (and those of `also`, not written); write results under out/<policy>,
    each policy's files replaced as a unit (an interruption leaves the earlier set or the new one,
    never a mix); return {policy: SimResult}. `mark`: fields added to every summary (e.g.
    `device_mismatch`); `progress`: a bar for large plans (default: when stderr is a terminal)."""
    from tqdm import tqdm

    from ..args import show_progress
    from ..io import atomic_dir
    from . import simulate, write_result
    n = (clips or scenario.workload.clip_count()) * scenario.workload.request_count()
    names = list(dict.fromkeys([*policies, *also]))
    results = {}
    progress = show_progress() if progress is None else progress
    with tqdm(names, unit="policy", file=sys.stderr, disable=not progress or n < PROGRESS_CLIPS, leave=False,
              dynamic_ncols=True) as bar:
        for p in bar:
            bar.set_description(f"simulating {p} ({n} clips)")
            results[p] = simulate(scenario, profile, p, clips)
            results[p].summary.update(mark or {})
    if out is not None:
        for p in policies:
            with atomic_dir(out / p) as tmp:
                write_result(results[p], tmp)
                if png:
                    draw_timeline(results[p], tmp)
    return results


def draw_timeline(res, out_dir: Path) -> Path:
    """Draw `out_dir/timeline.png` of a SimResult (the CLI's part: `write_result` draws nothing)."""
    from ..report.timeline import plot_timeline   # matplotlib, lazily
    return plot_timeline([res.trace], Path(out_dir) / "timeline.png",
                         titles=[f"{res.summary['scenario']} / {res.plan.policy}"])


def _check_profile(scenario, profile, prof_path, policies, clips, scenario_path) -> None:
    """The profile must describe the scenario's preset and every module its plans load (reload's
    too: it is the table's reference)."""
    from ..plan import make_plan
    from ..schema.profile import check_profile_fits
    keys = {ref.key for p in policies for ref in make_plan(scenario, p, 1, profile=profile).instances.values()}
    check_profile_fits(profile, prof_path, scenario.models.preset, keys, scenario_path)


def _check_clips(scenario, clips) -> None:
    from ..errors import ConfigError
    from ..schema.scenario import MAX_PLAN_CLIPS
    if clips is None:
        return
    if clips < 1:
        raise ConfigError(f"--clips: must be at least 1, got {clips}")
    if clips * scenario.workload.request_count() > MAX_PLAN_CLIPS:
        raise ConfigError(f"--clips: {clips} clips x {scenario.workload.request_count()} requests is above "
                          f"the bound of {MAX_PLAN_CLIPS} (a plan that large could not be built or run)")


def _notes(scenario, clips, out: Path, policies) -> list[str]:
    """What the user may not expect: top_k above the clip count, other policies' folders in DIR."""
    notes = []
    n = clips or scenario.workload.clip_count()
    from ..schema.pipeline import scenario_pipeline
    ranks = [s for s in scenario_pipeline(scenario).stages if s.op == "rank"]
    top_k = max((int(s.args.get("top_k", scenario.workload.top_k)) for s in ranks), default=0)
    if top_k > n:
        notes.append(f"note: top_k {top_k} is above the clip count {n}: every clip is in the top k")
    older = sorted(d.name for d in out.iterdir()
                   if d.is_dir() and not d.name.startswith(".") and d.name not in policies
                   and (d / "summary.json").exists())
    if older:
        notes.append(f"note: {out} also holds earlier results of {', '.join(older)} (not simulated this time)")
    return notes


def table(results: dict, reference=None) -> str:
    """The comparison table: policy, e2e, lower bound, reduction vs reload, peak GB, energy, OOM."""
    ref = reference or results.get("reload")
    ref_e2e = None if ref is None or ref.summary["oom"] else ref.summary["e2e_s"]
    first = next(iter(results.values())).summary if results else {}
    energy_head = f"energy (J, {first['power_model']['rule']})" if "power_model" in first else "energy (J)"
    rows = [("policy", "e2e (s)", "lower bound (s)", "e2e vs reload", "peak (GB)", energy_head, "OOM")]
    for p, r in results.items():
        s = r.summary
        e2e = f"{s['e2e_s']:.2f}" + (" (stopped)" if s["oom"] else "")
        red = "-" if ref_e2e is None or s["oom"] else f"{100 * (s['e2e_s'] / ref_e2e - 1):+.1f}%"
        oom = "no"
        if s["oom"]:
            ev = s["oom_event"]
            oom = f"yes at {ev['t_s']:.2f} s, {ev['step']} ({ev['total_bytes'] / 1e9:.3f} > {ev['limit_bytes'] / 1e9:.3f} GB)"
        energy = f"{s['energy_j']:.0f}" if "energy_j" in s else "-"
        rows.append((p, e2e, f"{s['lower_bound_s']:.2f}", red, f"{s['peak_bytes'] / 1e9:.3f}", energy, oom))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i in (0, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def oom_lines(results: dict) -> list[str]:
    """Each out-of-memory policy's breakdown at the moment it ran out, as summary.json holds it."""
    lines = []
    for p, r in results.items():
        ev = r.summary.get("oom_event") if r.summary.get("oom") else None
        if not ev:
            continue
        parts = ", ".join(f"{k.replace('_', ' ')} {v / 1e9:.3f}" for k, v in (ev.get("breakdown_bytes") or {}).items())
        lines.append(f"out of memory: {p} at {ev['t_s']:.2f} s in step {ev['step']}: {parts} GB; total "
                     f"{ev['total_bytes'] / 1e9:.3f} GB > RAM {ev['limit_bytes'] / 1e9:.3f} GB")
    return lines


def header(scenario, results: dict, prof_path, profile, mismatch: str | None) -> list[str]:
    """The lines above the table: the scenario, the device, what the profile is, the energy rule."""
    from ..schema.device_match import FLAG, describe_profile
    from ..schema.energy import rule_text
    first = next(iter(results.values()))
    out = [f"{scenario.name}: {first.plan.task}, {first.plan.clips} clips, device {scenario.device.name} "
           f"({scenario.device.cores} cores, {scenario.device.ram_bytes / 1e9:.2f} GB), profile {Path(prof_path).name}: "
           f"{describe_profile(profile)}"]
    if "power_model" in first.summary:
        out.append(f"energy: {rule_text(first.summary['power_model'])}")
    if mismatch:
        out.append(f"WARNING ({FLAG}): {mismatch}")
    return out


def reduction_text(e2e: float, ref: float) -> str:
    return f"{100 * (1 - e2e / ref):.1f}% faster" if e2e <= ref else f"{100 * (e2e / ref - 1):.1f}% slower"


def cmd_simulate(args) -> int:
    """Exit 0, or 3 (EXIT_OOM) when a policy ran out of memory."""
    from ..args import show_progress
    from ..errors import EXIT_OK, EXIT_OOM, ConfigError
    from ..io import check_writable_dir
    from ..schema.device_match import check_device
    from ..schema.profile import load_profile
    from ..schema.scenario import load_scenario
    scenario = load_scenario(args.scenario)
    _check_clips(scenario, args.clips)
    policies = _policies(args.policy, scenario.policy)
    prof_path = args.profile or scenario.profile
    if not prof_path:
        raise ConfigError(f"{args.scenario}: field 'profile': missing (or pass --profile FILE)")
    try:
        profile = load_profile(prof_path)
    except ConfigError as e:
        if args.profile:
            raise
        raise ConfigError(f"{args.scenario}: field 'profile': {e}") from None
    if not args.allow_profile_mismatch:
        _check_profile(scenario, profile, prof_path, [*policies, "reload"], args.clips, args.scenario)
    mismatch = check_device(profile, scenario.device, args.allow_device_mismatch, prof_path, args.scenario)
    if args.energy_rule:
        scenario = scenario.with_changes(**{"device.energy_rule": args.energy_rule})
    out = check_writable_dir(args.out)
    results = run_policies(scenario, profile, policies, args.clips, out, png=not args.no_png, also=["reload"],
                           mark={"device_mismatch": mismatch} if mismatch else None, progress=show_progress(args))
    ref = results["reload"]
    results = {p: results[p] for p in policies}
    print("\n".join(header(scenario, results, prof_path, profile, mismatch)))
    print(table(results, ref))
    print(f"wrote {out}/<policy>/{{summary.json,trace.json{'' if args.no_png else ',timeline.png'}}}")
    for note in _notes(scenario, args.clips, out, policies):
        print(note, file=sys.stderr)
    for line in oom_lines(results):
        print(line)
    oom = [p for p, r in results.items() if r.summary["oom"]]
    if oom:
        print(f"out of memory: {', '.join(oom)} (exit status {EXIT_OOM})", file=sys.stderr)
        return EXIT_OOM
    return EXIT_OK
