"""`atomsim search SCENARIO --ram SIZE [--ram SIZE ...] --out DIR`: the fastest schedule that fits
each budget (report/search.py). Exit 0; 3 when some budget is below what every schedule needs
(the minimum is printed; the others' files are written); 2 on bad input."""
from __future__ import annotations

import sys

from ..args import add_output_options, positive_int, show_progress


def register(sub) -> None:
    p = sub.add_parser(
        "search", help="the fastest schedule that fits each RAM budget, and the time-vs-RAM front",
        description="Simulate every schedule of SCENARIO (fixed policies with their threads and queue; budget "
        "policies budget-lru, budget-cost, budget-belady, budget-optimal with serial or parallel lanes and per "
        "module keep/reload/rule; every variant of the pipeline's modules) at each --ram budget. Writes "
        "DIR/candidates.csv and .parquet, DIR/pareto.csv, DIR/pareto.png, DIR/search.json and "
        "DIR/best-<SIZE>.yaml per budget (a scenario that simulate, run and validate take). Resumes when rerun.")
    p.add_argument("scenario", help="scenario YAML file (its profile: `profile:` or --profile)")
    p.add_argument("--ram", action="append", required=True, metavar="SIZE",
                   help="a RAM budget, e.g. 4GB, 3500MB, 3.5GiB (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--profile", metavar="FILE", help="profile JSON (default: the scenario's `profile`)")
    p.add_argument("--policies", nargs="+", metavar="P",
                   help="search only these policies (default: reload, reuse-serial, reuse-parallel, baseline-resident, "
                   "budget-lru, budget-cost, budget-belady, budget-optimal)")
    p.add_argument("--margin", type=float, default=None, metavar="PCT",
                   help="headroom kept below each budget, in %% (default 10: measured peaks were up to 7.6%% "
                   "above simulated ones)")
    p.add_argument("--sampler", choices=("auto", "grid", "optuna"), default="auto",
                   help="grid: simulate every schedule; optuna: Optuna's NSGA-II explores --trials of them per budget "
                   "(seeded); auto (default): grid up to 20,000 schedules, optuna above")
    p.add_argument("--trials", type=positive_int, default=2000, metavar="N",
                   help="trials per budget with the optuna sampler (default 2000)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--dask", metavar="ADDR", help="a Dask scheduler address (tcp://HOST:PORT) instead of local workers")
    p.add_argument("--allow-device-mismatch", action="store_true",
                   help="search even with a profile of another device than the scenario's (every output says so)")
    add_output_options(p)
    p.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    from ..errors import EXIT_OK, EXIT_OOM
    from .search import parse_budgets, run_search
    from .search_out import budget_lines
    budgets = parse_budgets(args.ram)
    res = run_search(args.scenario, budgets, args.out, profile=args.profile, workers=args.workers, dask=args.dask,
                     policies=args.policies, sampler=args.sampler, trials=args.trials, **({} if args.margin is None else {"margin_pct": args.margin}),
                     progress=show_progress(args), allow_device_mismatch=args.allow_device_mismatch)
    if res.device_mismatch:
        print(f"WARNING: {res.device_mismatch} (allowed by --allow-device-mismatch)", file=sys.stderr)
    n = len({r["schedule"] for r in res.rows})
    how = "every one" if res.sampler == "grid" else f"chosen by Optuna's NSGA-II, {args.trials} trials a budget"
    print(f"{n} schedules ({how}) x {len(budgets)} budgets simulated ({res.resumed} resumed); front of {len(res.pareto)}; "
          f"wrote {args.out}/candidates.csv, pareto.csv, pareto.png, search.json and best-<SIZE>.yaml")
    for line in budget_lines(res):
        print("  " + line)
    short = [label for label, _ in budgets if res.best[label] is None]
    if short:
        least = res.minimum_bytes()
        need = (f"the least any schedule needs is {least / 1e9:.3f} GB ({least} bytes), a budget of "
                f"{least / (1 - res.margin_pct / 100) / 1e9:.3f} GB with the {res.margin_pct:g}% margin") if least else \
            "no schedule completes at any budget given"
        print(f"atomsim: error: budget {', '.join(short)}: no schedule fits; {need}", file=sys.stderr)
        return EXIT_OOM
    return EXIT_OK
