"""`atomsim simulate` and `atomsim demo`. Imports nothing heavy at import time."""
from __future__ import annotations

import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
DEMO_PROFILE = DATA / "paper-pixel_5a.json"
DEMO_POLICIES = ("reload", "reuse-parallel")
DEMO_TASKS = ("assembly", "retrieval")


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a scenario under one or more policies",
                       description="Simulate SCENARIO (YAML) under each --policy; write DIR/<policy>/"
                       "{summary.json,trace.json,timeline.png} and print a comparison table.")
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--policy", action="append", metavar="P",
                   help="policy to simulate (repeatable; default: reload, reuse-serial, reuse-parallel and the scenario's)")
    p.add_argument("--profile", metavar="FILE", help="profile JSON (default: the scenario's `profile`)")
    p.add_argument("--clips", type=int, metavar="N", help="override the clip count")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--no-png", action="store_true", help="skip timeline.png")
    p.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="the paper's assembly and retrieval on the published Pixel 5a profile",
                       description="Simulate the paper's assembly and retrieval pipelines (5 clips) on the "
                       "published Pixel 5a profile under reload and reuse-parallel; print the comparison "
                       "and write the pictures.")
    d.add_argument("--out", default="atomsim-demo", metavar="DIR", help="output directory (default: ./atomsim-demo)")
    d.set_defaults(func=cmd_demo)


def _policies(requested, scenario_policy: str) -> list[str]:
    from ..errors import ConfigError, valid_names
    from ..plan import POLICY_BUILDERS
    pols = list(requested) if requested else ["reload", "reuse-serial", "reuse-parallel", scenario_policy]
    for p in pols:
        if p not in POLICY_BUILDERS:
            raise ConfigError(valid_names("policy", p, POLICY_BUILDERS))
    return list(dict.fromkeys(pols))


def run_policies(scenario, profile, policies, clips, out: Path | None, png: bool = True) -> dict:
    """Simulate each policy; write results under out/<policy>; return {policy: SimResult}."""
    from . import simulate, write_result
    results = {p: simulate(scenario, profile, p, clips) for p in policies}
    if out is not None:
        for p, res in results.items():
            write_result(res, out / p, png=png)
    return results


def table(results: dict, reference=None) -> str:
    """The comparison table: policy, e2e, lower bound, reduction vs reload, peak GB, OOM."""
    ref = reference or results.get("reload")
    ref_e2e = None if ref is None or ref.summary["oom"] else ref.summary["e2e_s"]
    rows = [("policy", "e2e (s)", "lower bound (s)", "e2e vs reload", "peak (GB)", "energy (J)", "OOM")]
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


def reduction_text(e2e: float, ref: float) -> str:
    return f"{100 * (1 - e2e / ref):.1f}% faster" if e2e <= ref else f"{100 * (e2e / ref - 1):.1f}% slower"


def cmd_simulate(args) -> int:
    from ..errors import ConfigError
    from ..io import check_writable_dir
    from ..schema.profile import load_profile
    from ..schema.scenario import load_scenario
    scenario = load_scenario(args.scenario)
    if args.clips is not None and args.clips < 1:
        raise ConfigError(f"--clips: must be at least 1, got {args.clips}")
    policies = _policies(args.policy, scenario.policy)
    prof_path = args.profile or scenario.profile
    if not prof_path:
        raise ConfigError(f"{args.scenario}: field 'profile': missing (or pass --profile FILE)")
    profile = load_profile(prof_path)
    out = check_writable_dir(args.out)
    results = run_policies(scenario, profile, policies, args.clips, out, png=not args.no_png)
    ref = results.get("reload")
    if ref is None:
        from . import simulate
        ref = simulate(scenario, profile, "reload", args.clips)
    print(f"{scenario.name}: {scenario.workload.task}, {results[policies[0]].plan.clips} clips, device "
          f"{scenario.device.name} ({scenario.device.cores} cores, {scenario.device.ram_bytes / 1e9:.2f} GB), "
          f"profile {Path(prof_path).name} ({profile.source})")
    print(table(results, ref))
    print(f"wrote {out}/<policy>/{{summary.json,trace.json{'' if args.no_png else ',timeline.png'}}}")
    return 0


def demo_scenarios():
    """The demo's scenarios, from embedded data only (the device catalog and the published profile)."""
    from ..schema.scenario import scenario_from_mapping
    return {task: scenario_from_mapping(
        {"name": f"{task}-pixel_5a", "device": "pixel_5a",
         "workload": {"task": task, "clips": 5, "top_k": 5},
         "models": {"preset": "paper", "quant": "torchao-int8"}, "policy": "reuse-parallel",
         "threads": {"main": 1, "encoder": 1, "decoder": 1}, "profile": str(DEMO_PROFILE)},
        f"demo {task}") for task in DEMO_TASKS}


def cmd_demo(args) -> int:
    from ..io import check_writable_dir
    from ..report.timeline import plot_timeline
    from ..schema.profile import load_profile
    out = check_writable_dir(args.out)
    profile = load_profile(DEMO_PROFILE)
    print("atomsim demo: the paper's pipelines on a Pixel 5a (8 cores, 6 GB), published profile "
          "(Table 3/6/8 figures, int8), 5 clips")
    for task, sc in demo_scenarios().items():
        results = run_policies(sc, profile, DEMO_POLICIES, None, out / task)
        plot_timeline([r.trace for r in results.values()], out / task / "timeline-compare.png",
                      titles=[f"{task} / {p}" for p in results])
        a, b = (results[p].summary["e2e_s"] for p in DEMO_POLICIES)
        print(f"\n{task}: reuse-parallel is {reduction_text(b, a)} than reload "
              f"(paper, Table 3: {'30.8' if task == 'assembly' else '33.1'}% faster)")
        print(table(results))
    print(f"\npictures: {out}/<task>/timeline-compare.png and {out}/<task>/<policy>/timeline.png; "
          f"traces open in https://ui.perfetto.dev")
    sys.stdout.flush()
    return 0
