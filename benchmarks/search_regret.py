"""Regret of each schedule family against the optimum, at RAM budgets from the least that fits to
everything resident: the paper's pipelines on the three phones' published profiles, and the
2-request small assembly on this machine's measured profile.

    python benchmarks/search_regret.py [--out out/search-regret] [--commit] [--workers 2]

For each scenario: a first search at a generous budget gives the least RAM any schedule needs
(`minimum`) and what the fastest needs (`everything resident`); then `atomsim search` at five
budgets between them (with search's 10% margin: a budget holds a schedule whose peak is 90% of
it). Per budget: the optimum (the fastest schedule that fits, of every one
searched), the fastest of each fixed policy and of each budget rule (over their settings), and
each one's regret (% slower than the optimum; "-" where none fits). Also the rules at their
plain settings (serial lanes, no marks, the scenario's threads): the choice of evictions alone.
Writes OUT/search.{json,md} and OUT/search-fronts.png (`--commit`: docs/search.{json,md} and
docs/search-fronts.png). Exits 1 when an optimum is slower than a schedule that fits (a bug).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIOS = [f"scenarios/paper/{t}-{d}.yaml" for t in ("assembly", "retrieval")
             for d in ("pixel_5a", "pixel_8a", "galaxy_s23")] + ["scenarios/search/assembly-pixel_5a-3req.yaml",
                                                     "scenarios/search/assembly-small-dyn8.yaml"]
FAMILIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident",
            "budget-lru", "budget-cost", "budget-belady", "budget-optimal")
MB = 10**6


def budgets_of(sc_path: str, out: Path, workers: int) -> list[int]:
    from atomsim.report.search import run_search
    res = run_search(ROOT / sc_path, [("probe", 64 * 10**9)], out / "probe", workers=workers)
    keep = 1 - res.margin_pct / 100   # a budget holds a schedule when its peak is under budget x keep
    least = res.minimum_bytes() / keep
    top = max(res.best["probe"]["charged_peak_high_bytes"] / keep, least)
    steps = 5
    return sorted({-(-int(least + (top - least) * i / (steps - 1)) // MB) * MB for i in range(steps)})


def plain(row: dict, threads: dict) -> bool:
    """A budget rule at its plain settings: serial lanes, no marks, the scenario's main threads."""
    return (row.get("schedule.lanes") == "serial" and row.get("schedule.modules") == "all=rule"
            and row.get("threads.main") == threads["main"])


def table(res, sc) -> list[dict]:
    out = []
    threads = sc.threads.model_dump()
    for label, n in res.budgets:
        fit = [r for r in res.rows if r["ram_bytes"] == n and r["fits"]]
        opt = res.best[label]
        row = {"budget_bytes": n, "optimum_e2e_s": opt["e2e_s"] if opt else None,
               "optimum": None if opt is None else {k: opt.get(k) for k in ("policy", "variant", "schedule.lanes",
                                                                             "schedule.modules", "workload.queue_size")}}
        for fam in FAMILIES:
            mine = [r for r in fit if r["policy"] == fam]
            best = min((r["e2e_s"] for r in mine), default=None)
            row[fam] = best
            if fam.startswith("budget-"):
                p = [r["e2e_s"] for r in mine if plain(r, threads) and r["variant"] == "none"]
                row[fam + " plain"] = min(p, default=None)
        out.append(row)
    return out


def regret(v, opt):
    return None if v is None or opt is None else round(100 * (v - opt) / opt, 2)


def markdown(report: dict) -> str:
    lines = ["# Schedule search: regret against the optimum", "",
             "Remake: `python benchmarks/search_regret.py --commit` (simulated: deterministic). For each budget, "
             "from the least RAM any schedule needs to what the fastest needs: the optimum (the fastest of every "
             "schedule `atomsim search` tries) and each family's fastest schedule that fits, as % slower than the "
             "optimum (0: it is the optimum; -: nothing of it fits). `plain`: the rule with serial lanes, no "
             "marks and the scenario's threads on the pipeline's own modules (the eviction choice alone). "
             "`optuna`: the best that Optuna's NSGA-II found in `--trials` trials a budget (seeded), against the "
             "exhaustive optimum: the gap of the sampler `search` uses above 20,000 schedules. "
             "Peaks are as a RAM limit counts them, and a schedule fits a budget when the top of its simulated peak's range does (two lanes' ops in one heap, ops whose profiling rounds peaked above their median: sim/engine.py; the phones' profiles measured neither, so their ranges are points).", "",
             "![fronts](search-fronts.png)", ""]
    cols = [*FAMILIES, *(f + " plain" for f in FAMILIES if f.startswith("budget-")), "optuna"]
    for s in report["scenarios"]:
        lines += [f"## {s['scenario']} ({s['profile']})", "",
                  "| budget (MB) | optimum (s) | optimum is | " + " | ".join(cols) + " |",
                  "|---" * (3 + len(cols)) + "|"]
        for r in s["rows"]:
            o = r["optimum"] or {}
            what = f"{o.get('policy')} {o.get('variant')} {o.get('schedule.lanes') or ''}".strip() if o else "-"
            cells = ["-" if r[c if c != "optuna" else "optuna_e2e_s"] is None else
                     f"{regret(r[c if c != 'optuna' else 'optuna_e2e_s'], r['optimum_e2e_s']):+.1f}%" for c in cols]
            opt = "-" if r["optimum_e2e_s"] is None else f"{r['optimum_e2e_s']:.2f}"
            lines.append(f"| {r['budget_bytes'] / MB:.0f} | {opt} | {what} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(report: dict, fronts: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(fronts)
    fig, axes = plt.subplots((n + 2) // 3, 3, figsize=(14, 4 * ((n + 2) // 3)), squeeze=False)
    for ax, (name, front) in zip(axes.flat, fronts.items()):
        xs = [r["charged_peak_high_bytes"] / 1e9 for r in front]
        ys = [r["e2e_s"] for r in front]
        ax.step(sorted(xs), [y for _, y in sorted(zip(xs, ys))], where="post", color="#0072b2")
        ax.scatter(xs, ys, s=14, color="#0072b2")
        for r in front:
            ax.annotate(r["policy"].replace("budget-", "b-"), (r["charged_peak_high_bytes"] / 1e9, r["e2e_s"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("peak RAM, as a limit counts it (GB)")
        ax.set_ylabel("end-to-end time (s)")
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("time-versus-RAM fronts (each point: the fastest schedule for that much RAM)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    from atomsim.io import atomic_write_json, atomic_write_text
    from atomsim.report.search import run_search
    from atomsim.schema.scenario import load_scenario
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/search-regret")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--commit", action="store_true")
    ap.add_argument("--scenario", action="append", default=None)
    ap.add_argument("--trials", type=int, default=300, help="Optuna trials a budget, against the exhaustive optimum")
    a = ap.parse_args(argv)
    out = Path(a.out).resolve()
    report, fronts, bad = {"scenarios": []}, {}, []
    for sc_path in a.scenario or SCENARIOS:
        sc = load_scenario(ROOT / sc_path)
        d = out / sc.name
        budgets = budgets_of(sc_path, d, a.workers)
        res = run_search(ROOT / sc_path, [(f"{b // MB}MB", b) for b in budgets], d, workers=a.workers)
        rows = table(res, sc)
        guided = run_search(ROOT / sc_path, [(f"{b // MB}MB", b) for b in budgets], d / "optuna", workers=a.workers,
                            sampler="optuna", trials=a.trials)
        for r, (label, _) in zip(rows, guided.budgets):
            g = guided.best[label]
            r["optuna_e2e_s"], r["optuna_simulated"] = (g["e2e_s"] if g else None), sum(
                1 for x in guided.rows if x["ram_bytes"] == r["budget_bytes"])
        for r in rows:
            for fam in FAMILIES:
                if r[fam] is not None and r["optimum_e2e_s"] is not None and r[fam] < r["optimum_e2e_s"] - 1e-9:
                    bad.append(f"{sc.name} at {r['budget_bytes']}: {fam} faster than the optimum")
        report["scenarios"].append({"scenario": sc.name, "profile": Path(sc.profile).name, "rows": rows,
                                    "candidates": len({r["schedule"] for r in res.rows})})
        fronts[f"{sc.name} ({Path(sc.profile).name})"] = res.pareto
        print(f"{sc.name}: budgets {[b // MB for b in budgets]} MB", flush=True)
    md = markdown(report)
    atomic_write_json(out / "search.json", report)
    atomic_write_text(out / "search.md", md)
    plot(report, fronts, out / "search-fronts.png")
    if a.commit:
        import shutil
        atomic_write_json(ROOT / "docs" / "search.json", report)
        atomic_write_text(ROOT / "docs" / "search.md", md)
        shutil.copyfile(out / "search-fronts.png", ROOT / "docs" / "search-fronts.png")
    print(md)
    for b in bad:
        print("FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
