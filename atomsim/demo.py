"""`atomsim demo`: the paper's assembly and retrieval pipelines on the published Pixel 5a profile,
simulated under reload and reuse-parallel (the README's first command). Imports nothing heavy."""
from __future__ import annotations

import sys
from pathlib import Path

from .sim.cli import reduction_text, run_policies, table

DEMO_PROFILE = Path(__file__).resolve().parent / "data" / "paper-pixel_5a.json"
DEMO_POLICIES = ("reload", "reuse-parallel")
DEMO_TASKS = ("assembly", "retrieval")


def register(sub) -> None:
    d = sub.add_parser("demo", help="the paper's assembly and retrieval on the published Pixel 5a profile",
                       description="Simulate the paper's assembly and retrieval pipelines (5 clips) on the "
                       "published Pixel 5a profile under reload and reuse-parallel; print the comparison "
                       "and write the pictures.")
    d.add_argument("--out", default="atomsim-demo", metavar="DIR", help="output directory (default: ./atomsim-demo)")
    d.set_defaults(func=cmd_demo)


def demo_scenarios():
    """The demo's scenarios, from embedded data only (the device catalog and the published profile)."""
    from .schema.scenario import scenario_from_mapping
    return {task: scenario_from_mapping(
        {"name": f"{task}-pixel_5a", "device": "pixel_5a",
         "workload": {"task": task, "clips": 5, "top_k": 5},
         "models": {"preset": "paper", "quant": "torchao-int8"}, "policy": "reuse-parallel",
         "threads": {"main": 1, "encoder": 1, "decoder": 1}, "profile": str(DEMO_PROFILE)},
        f"demo {task}") for task in DEMO_TASKS}


def cmd_demo(args) -> int:
    from .io import check_writable_dir
    from .report.timeline import plot_timeline
    from .schema.profile import load_profile
    out = check_writable_dir(args.out)
    profile = load_profile(DEMO_PROFILE)
    print("atomsim demo: the paper's pipelines on a Pixel 5a (8 cores, 6 GB), published profile "
          "(Table 3/6/8 figures, int8), 5 clips")
    print("reload, the baseline: every module loaded per stage and request, captions by the pipeline's baseline "
          "variant (a BERT decoder), whose caption and load times the published profile takes from Table 3's "
          "baseline column; the paper's baseline reloading the reuse modules is `variant: none` (measured at "
          "paper size, the two differ: docs/paper-scale.md)")
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
