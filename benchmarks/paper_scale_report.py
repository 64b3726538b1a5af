"""The plans and the report of benchmarks/paper_scale.py (issue 27): each task, backend and policy's
scenario, simulated with the measured profile beside the kept real runs and the paper's Tables 3
and 8. `python benchmarks/paper_scale.py --report-only [--commit]` makes no run: OUT/report.{json,md}
(with --commit docs/paper-scale.{json,md} too; the JSON: {compare, table3, table8, ram_limit, fit,
load_temporaries}); OUT/notes.md, written by hand from what was measured, goes in as it is.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(p) for p in (ROOT, ROOT / "benchmarks") if str(p) not in sys.path]

import ram_fidelity as rf  # noqa: E402

GB, MB = 10**9, 10**6
PUBLISHED = (ROOT.parent / "shared" / "paper" / "atom-published.yaml", ROOT / "paper" / "atom-published.yaml",
             Path("/work/shared/paper/atom-published.yaml"))
WORKLOAD = {"assembly": 'task: assembly, prompt: "make a highlight reel of the trip", top_k: 5',
            "retrieval": 'task: retrieval, queries: ["a person is cooking", "a dog runs on the beach"]'}
T3_COL = {"retrieval": 5, "assembly": 6}
T3_QUANT = {"fp32": "fp32", "torch-dynamic-int8": "int8"}
# a policy of the tables -> (atomsim's policy, the scenario's `variant`)
POLICIES = {"reload": ("reload", "auto"), "reload-paper": ("reload", "none"),
            "reuse-serial": ("reuse-serial", "auto"), "reuse-parallel": ("reuse-parallel", "auto")}
BASELINES = {
    "reload": "atomsim's reload: the pipeline's `baseline` variant (captions by the BERT decoder, scripts by "
              "the Llama decoder), each module loaded and freed per phase and per request",
    "reload-paper": "the paper's baseline (`policy: reload`, `variant: none`): the reuse modules themselves "
                    "(the Llama decoder for captions and for scripts), loaded and freed per phase and per request"}
FIT = (("assembly", "torch-dynamic-int8", "reload"), ("assembly", "torch-dynamic-int8", "reuse-parallel"))
FIT_RUNS = "fit_runs.jsonl"
PEAK_MEDIAN_PCT, PEAK_WORST_PCT = 5.0, 10.0
LOAD_SLACK = 8 * MB   # what any load allocates besides its tensors (tests/test_load_memory.py)
THREADS = "this machine: 2 cores (main 2, encoder 1, decoder 1); paper: x86 server 96 cores, phones 8"


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a kept jsonl (a line cut by an interruption left out)."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def scenario(a, task: str, quant: str, policy: str = "reuse-parallel") -> Path:
    """The scenario of one task, backend and policy: host device with RAM = the limit, 5 clips."""
    d = a.work / "scenarios"
    d.mkdir(parents=True, exist_ok=True)
    atom, variant = POLICIES[policy]
    p = d / f"{task}-paper-{quant}{'' if variant == 'auto' else f'-variant-{variant}'}.yaml"
    p.write_text(f"name: {task}-paper-{quant}\ndevice: {{base: host, ram_bytes: {a.limit}, os_reserved_bytes: 0}}\n"
                 f"workload: {{{WORKLOAD[task]}}}\nmodels: {{preset: paper, quant: {quant}}}\n"
                 f"policy: {atom}\nvariant: \"{variant}\"\nthreads: {{main: 2, encoder: 1, decoder: 1}}\n"
                 f"profile: {a.profile}\n")
    return p


def combos(a):
    return [(t, q, p) for t in a.task for q in a.quant for p in a.policy]


def simulated(a) -> dict:
    """{(task, quant, policy): simulated summary} with the measured profile."""
    from atomsim.schema.profile import load_profile
    from atomsim.schema.scenario import load_scenario
    from atomsim.sim import simulate
    prof = load_profile(a.profile)
    return {(t, q, p): simulate(load_scenario(scenario(a, t, q, p)), prof, POLICIES[p][0]).summary
            for t, q, p in combos(a)}


def pct(a, b):
    return None if a is None or b in (None, 0) else round((a - b) / b * 100, 1)


def reduction(base, atom):
    """How much shorter `atom` is than `base`, % of `base` (negative: longer)."""
    return None if base in (None, 0) or atom is None else round((base - atom) / base * 100, 1)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def mine(runs, task, quant, policy, completed=True):
    return [r for r in runs if (r["task"], r["quant"], r["policy"]) == (task, quant, policy)
            and (not completed or r.get("outcome") == "completed")]


def compare_rows(a, runs: list[dict], sims: dict) -> list[dict]:
    rows = []
    for task, quant, policy in combos(a):
        done, s = mine(runs, task, quant, policy), sims[(task, quant, policy)]
        me, mp = median(r.get("e2e_s") for r in done), median(r.get("peak_bytes") for r in done)
        se, sp = s["e2e_s"] if s.get("completed") else None, s["peak_bytes"]
        rows.append({"scenario": task, "policy": policy, "quant": quant,
                     "measured_e2e_s": me, "simulated_e2e_s": se, "e2e_error_pct": pct(se, me),
                     "measured_peak_bytes": mp, "simulated_peak_bytes": sp, "peak_error_pct": pct(sp, mp),
                     "runs_completed": len(done), "simulated_completed": bool(s.get("completed")),
                     "loadavg_at_start": median(r["loadavg"][0] for r in done if r.get("loadavg"))})
    return rows


def paper_reduction(pub: dict, quant: str, device: str, task: str):
    d = pub["table3_latency_s"].get(T3_QUANT[quant], {}).get(device)
    if not d:
        return None
    rl, ru = d["reload"][T3_COL[task]], d["reuse"][T3_COL[task]]
    return round((rl - ru) / rl * 100, 1)


def table3_rows(a, pub: dict, runs: list[dict], rows: list[dict]) -> list[dict]:
    """Reduction of reuse-parallel's e2e against each baseline, beside Table 3's (and by round:
    each round's baseline run against the same round's reuse-parallel run)."""
    out = []
    for r in rows:
        if r["policy"] not in BASELINES:
            continue
        atom = next((x for x in rows if (x["scenario"], x["quant"], x["policy"]) ==
                     (r["scenario"], r["quant"], "reuse-parallel")), None)
        if atom is None:
            continue
        base_runs = {x["round"]: x for x in mine(runs, r["scenario"], r["quant"], r["policy"])}
        atom_runs = {x["round"]: x for x in mine(runs, r["scenario"], r["quant"], "reuse-parallel")}
        phones = [paper_reduction(pub, r["quant"], d, r["scenario"]) for d in ("pixel_5a", "pixel_8a", "galaxy_s23")]
        out.append({"task": r["scenario"], "quant": r["quant"], "baseline": r["policy"],
                    "measured_reduction_pct": reduction(r["measured_e2e_s"], atom["measured_e2e_s"]),
                    "simulated_reduction_pct": reduction(r["simulated_e2e_s"], atom["simulated_e2e_s"]),
                    "paper_x86_reduction_pct": paper_reduction(pub, r["quant"], "x86_cpu", r["scenario"]),
                    "paper_phone_reduction_pct": [p for p in phones if p is not None] or None,
                    "measured_reduction_by_round_pct": [reduction(base_runs[i]["e2e_s"], atom_runs[i]["e2e_s"])
                                                        for i in sorted(base_runs) if i in atom_runs],
                    "baseline_modules": BASELINES[r["policy"]], "threads": THREADS})
    return out


def table8_rows(a, pub: dict, runs: list[dict], sims: dict) -> list[dict]:
    """The peak's parts of the assembly (median over completed runs), beside Table 8's (its
    baseline column beside both baselines)."""
    t8 = pub["table8_memory_gb"]
    out = []
    for quant in a.quant:
        for policy, paper_key in (("reload", "reload"), ("reload-paper", "reload"), ("reuse-parallel", "reuse")):
            if ("assembly", quant, policy) not in sims:
                continue
            done = [r for r in mine(runs, "assembly", quant, policy) if r.get("breakdown_bytes")]
            s = sims[("assembly", quant, policy)]
            sb = s.get("breakdown_bytes") or {}
            for part in ("weights", "inputs", "activations", "load_temporaries", "baseline", "peak"):
                meas = median((r["peak_bytes"] if part == "peak" else r["breakdown_bytes"].get(part)) for r in done)
                sim = s["peak_bytes"] if part == "peak" else sb.get(part)
                out.append({"policy": policy, "quant": quant, "part": part, "paper_gb": t8[paper_key].get(part),
                            "measured_gb": None if meas is None else round(meas / GB, 3),
                            "simulated_gb": None if sim is None else round(sim / GB, 3)})
    return out


def ram_limit_rows(a, runs: list[dict], sims: dict) -> list[dict]:
    return [{"scenario": t, "policy": p, "quant": q, "limit_bytes": a.limit, "outcome": [r.get("outcome") for r in
             sorted(mine(runs, t, q, p, completed=False), key=lambda r: r["round"])],
             "simulated_outcome": "completed" if s.get("completed") else "oom"} for (t, q, p), s in sims.items()]


def fit_rows(a) -> list[dict]:
    """The fit boundaries from the kept fit runs (ram_fidelity's bisection; a bracket where it did
    not finish)."""
    from atomsim.schema.profile import load_profile
    prof = load_profile(a.profile)
    runs = rf.Runs(a.work / "fit", None, extra=[a.out / FIT_RUNS], offline=True)
    out = []
    for task, quant, policy in FIT:
        sc, atom = scenario(a, task, quant, policy), POLICIES[policy][0]
        smin = rf.sim_min_ram(sc, atom, prof, None)
        fit, outcomes = rf.fit_from_cache(runs, sc, atom, smin, rf.REPEATS)
        out.append({"policy": policy, "quant": quant, "scenario": task, **fit,
                    "outcomes_at_simulated_minus_plus_10pct": outcomes,
                    "limits_probed": {str(lim): [r["outcome"] for r in rs] for lim, rs in runs.of(sc, atom).items()}})
    return out


def load_rows(a) -> list[dict]:
    keep = ("module", "backend", "load_temporaries_bytes", "largest_tensor_bytes", "file_bytes", "kept_bytes")
    rows = [{k: r[k] for k in keep} for r in read_jsonl(a.out / "load_temporaries.jsonl")]
    for r in rows:
        r["within_bound"] = r["load_temporaries_bytes"] <= 1.1 * r["largest_tensor_bytes"] + LOAD_SLACK
        r["within_bound_without_slack"] = r["load_temporaries_bytes"] <= 1.1 * r["largest_tensor_bytes"]
        r["fraction_of_file"] = round(r["load_temporaries_bytes"] / r["file_bytes"], 4)
    return rows


def bounds(rep: dict) -> dict:
    """Each bound of the issue: {name: (holds, what was found)}."""
    errs = [abs(r["peak_error_pct"]) for r in rep["compare"] if r["peak_error_pct"] is not None]
    worst = max((r for r in rep["compare"] if r["peak_error_pct"] is not None),
                key=lambda r: abs(r["peak_error_pct"]), default=None)
    med = median(errs)
    out = {"peak_median": (med is not None and med <= PEAK_MEDIAN_PCT, f"median |error| {fmt(med, nd=1)}% over "
                           f"{len(errs)} plans (bound {PEAK_MEDIAN_PCT:g}%)"),
           "peak_worst": (worst is not None and abs(worst["peak_error_pct"]) <= PEAK_WORST_PCT,
                          "worst " + (f"{worst['peak_error_pct']:+.1f}% ({worst['scenario']}/{worst['quant']}/"
                                      f"{worst['policy']})" if worst else "-") + f" (bound {PEAK_WORST_PCT:g}%)")}
    for f in rep["fit"]:
        ok = f["status"] == "bisected" and f["error_pct"] is not None and abs(f["error_pct"]) <= rf.FIT_BOUND_PCT
        err = "-" if f["error_pct"] is None else f"{f['error_pct']:+.1f}%"
        out[f"fit_{f['policy']}"] = (ok, f"{f['scenario']}/{f['quant']}/{f['policy']}: simulated "
                                     f"{fmt(f['simulated_min_ram_bytes'], MB, 0)} MB, measured "
                                     f"{fmt(f['measured_min_ram_bytes'], MB, 0)} MB, error {err} ({f['status']}; "
                                     f"bound {rf.FIT_BOUND_PCT:g}%)")
    over = [r for r in rep["load_temporaries"] if not r["within_bound"]]
    strict = [r for r in rep["load_temporaries"] if not r["within_bound_without_slack"]]
    out["load_temporaries"] = (not over, f"{len(rep['load_temporaries']) - len(over)} of {len(rep['load_temporaries'])}"
                               " loads within largest tensor +10% +8 MB; without the 8 MB: "
                               + (", ".join(f"{r['module']}/{r['backend']} {r['load_temporaries_bytes'] / MB:.1f} MB "
                                            f"against {1.1 * r['largest_tensor_bytes'] / MB:.1f} MB" for r in strict)
                                  or "all within"))
    return out


def fmt(x, scale=1.0, nd=2):
    return "-" if x is None else f"{x / scale:.{nd}f}"


def report(a) -> int:
    """OUT/report.{json,md} (docs/paper-scale.{json,md} with a.commit) from the kept runs; 1 when a
    wanted run is missing or failed, or a bound does not hold."""
    import yaml

    from atomsim.io import atomic_write_json, atomic_write_text
    found = [p for p in PUBLISHED if p.exists()]
    if not found:
        raise SystemExit("atom-published.yaml (the paper's tables) not found: expected ../shared/paper/ beside the repo")
    pub = yaml.safe_load(found[0].read_text())
    runs, sims = read_jsonl(a.out / "runs.jsonl"), simulated(a)
    rows = compare_rows(a, runs, sims)
    rep = {"compare": rows, "table3": table3_rows(a, pub, runs, rows), "table8": table8_rows(a, pub, runs, sims),
           "ram_limit": ram_limit_rows(a, runs, sims), "fit": fit_rows(a), "load_temporaries": load_rows(a)}
    checks = bounds(rep)
    got = {r["key"]: r for r in runs}
    bad = [f"{k}: {got[k]['outcome'] if k in got else 'not run'}" for k in
           sorted(f"{t}/{q}/{p}#{i}" for t, q, p in combos(a) for i in range(a.rounds))
           if got.get(k, {}).get("outcome") not in ("completed", "oom-killed")]
    notes = a.out / "notes.md"
    day = re.search(r"\d{4}-\d{2}-\d{2}", a.out.name)   # the runs' day (the directory's name), else today
    meta = {"date": day.group(0) if day else time.strftime("%Y-%m-%d"), "limit_bytes": a.limit, "profile": a.profile,
            "fit_runs": len(read_jsonl(a.out / FIT_RUNS)), "missing": bad,
            "notes": notes.read_text() if notes.exists() else None}
    text = markdown(rep, checks, meta)
    targets = [(a.out / "report.json", a.out / "report.md")]
    if a.commit:
        targets.append((ROOT / "docs" / "paper-scale.json", ROOT / "docs" / "paper-scale.md"))
    for js, md in targets:
        atomic_write_json(js, rep)
        atomic_write_text(md, text)
    print(text, flush=True)
    for b in bad:
        print(f"not made: {b}", flush=True)
    return 1 if bad or not all(ok for ok, _ in checks.values()) else 0


# ---- markdown
def plain(rep: dict) -> list[str]:
    """Per task, backend and baseline: does reuse-parallel beat it here, in one sentence (yes: its
    median e2e is shorter and it was shorter in most rounds; no: longer, and in most rounds)."""
    lim = {(r["scenario"], r["quant"], r["policy"]): r for r in rep["ram_limit"]}
    out = []
    for r in rep["table3"]:
        key = f"{r['task']}, {r['quant']}, against `{r['baseline']}`"
        m, s, rounds = r["measured_reduction_pct"], r["simulated_reduction_pct"], r["measured_reduction_by_round_pct"]
        paper = (f"simulated {'-' if s is None else f'{s:.1f}%'}; Table 3: x86 {fmt(r['paper_x86_reduction_pct'], nd=1)}%"
                 + (f", phones {', '.join(f'{p:.1f}' for p in r['paper_phone_reduction_pct'])}%"
                    if r["paper_phone_reduction_pct"] else ""))
        if m is None:
            b, p = lim[(r["task"], r["quant"], r["baseline"])], lim[(r["task"], r["quant"], "reuse-parallel")]
            fb, fp = "completed" in b["outcome"], "completed" in p["outcome"]
            verdict = ("**no**: reuse-parallel does not fit" if fb and not fp else
                       "**neither fits**" if not (fb or fp) else "not measured")
            out.append(f"- {key}: does reuse-parallel beat it on this machine? {verdict} under {rep_limit(rep)}: "
                       f"the baseline's runs {', '.join(b['outcome']) or 'not made'} (simulated "
                       f"{b['simulated_outcome']}), reuse-parallel's {', '.join(p['outcome']) or 'not made'} "
                       f"(simulated {p['simulated_outcome']}); {paper}.")
            continue
        wins, n = sum(x > 0 for x in rounds if x is not None), len(rounds)
        verdict = ("**yes**" if m > 0 and 2 * wins > n else "**no**" if m <= 0 and 2 * wins < n
                   else "**not clearly** (the rounds disagree)")
        out.append(f"- {key}: does reuse-parallel beat it on this machine? {verdict}: {abs(m):.1f}% "
                   f"{'shorter' if m > 0 else 'longer'} (medians of {n} rounds; per round "
                   f"{', '.join(fmt(x, nd=1) for x in rounds)}%: shorter in {wins} of {n}); {paper}.")
    return out


def rep_limit(rep: dict) -> str:
    return f"--ram-limit {rep['ram_limit'][0]['limit_bytes'] / GB:g}GB" if rep["ram_limit"] else "-"


def md_compare(rep: dict) -> list[str]:
    lines = ["## Measured against simulated", "",
             "| task | backend | policy | runs done | e2e s measured | simulated | err % | peak GB measured | "
             "simulated | err % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["compare"]:
        lines.append(f"| {r['scenario']} | {r['quant']} | {r['policy']} | {r['runs_completed']} | "
                     f"{fmt(r['measured_e2e_s'])} | {fmt(r['simulated_e2e_s'])} | {fmt(r['e2e_error_pct'], nd=1)} | "
                     f"{fmt(r['measured_peak_bytes'], GB)} | {fmt(r['simulated_peak_bytes'], GB)} | "
                     f"{fmt(r['peak_error_pct'], nd=1)} |")
    lines += ["", "Load average at the runs' start (median; 2 cores, shared: end-to-end times drift with it): "
              + ", ".join(f"{r['scenario']}/{r['quant']}/{r['policy']} {fmt(r['loadavg_at_start'], nd=1)}"
                          for r in rep["compare"] if r["runs_completed"]) + "."]
    return lines


def md_table3(rep: dict) -> list[str]:
    lines = ["## Reduction of reuse-parallel's end-to-end time against each baseline (Table 3)", "",
             "Negative: reuse-parallel slower. Threads: " + THREADS + ". The baselines:", ""]
    lines += [f"- `{k}`: {v}." for k, v in BASELINES.items()]
    lines += ["", "| task | backend | baseline | measured % | per round % | simulated % | paper x86 % | "
              "paper phones % |", "|---|---|---|---|---|---|---|---|"]
    for r in rep["table3"]:
        phones = ", ".join(f"{p:.1f}" for p in r["paper_phone_reduction_pct"] or []) or "-"
        lines.append(f"| {r['task']} | {r['quant']} | {r['baseline']} | {fmt(r['measured_reduction_pct'], nd=1)} | "
                     f"{', '.join(fmt(x, nd=1) for x in r['measured_reduction_by_round_pct']) or '-'} | "
                     f"{fmt(r['simulated_reduction_pct'], nd=1)} | {fmt(r['paper_x86_reduction_pct'], nd=1)} | {phones} |")
    return lines


def md_table8(rep: dict) -> list[str]:
    lines = ["## The peak's parts, assembly (Table 8)", "",
             "GB; the paper does not say its backend, and its baseline column stands beside both baselines. The "
             "runner counts a module whose load is running at the peak as load temporaries whole (its weights are "
             "known when the load ends: run/memory.py); the simulator splits it into weights and the profile's "
             "load temporaries (the load temporaries measured alone are in the last table).", "",
             "| backend | policy | part | paper | measured | simulated |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['quant']} | {r['policy']} | {r['part']} | {fmt(r['paper_gb'], nd=3)} | {fmt(r['measured_gb'], nd=3)} "
              f"| {fmt(r['simulated_gb'], nd=3)} |" for r in rep["table8"]]
    return lines


def md_limits(rep: dict) -> list[str]:
    lines = [f"## Inside a 6 GB limit ({rep_limit(rep)}, the Pixel 5a's RAM)", "",
             "| task | backend | policy | real runs | simulated |", "|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['quant']} | {r['policy']} | {', '.join(map(str, r['outcome'])) or '-'} | "
              f"{r['simulated_outcome']} |" for r in rep["ram_limit"]]
    lines += ["", "### Fit boundary: the smallest RAM at which the plan completes", "",
              "Simulated: bisection to 1 MB (benchmarks/ram_fidelity.py's `sim_min_ram`, the host device, the "
              "measured profile). Measured: real runs with the weight files evicted first, a limit fitting when 3 "
              "of 3 runs complete there and not fitting at the first killed run, bisected from the simulated "
              "minimum -10% / +10% until a killed and a fitting limit are within 2% (`fit_and_outcomes`).", "",
              "| task | backend | policy | simulated MB | measured MB (3 of 3) | killed at MB | error | "
              "lowest single completion MB | runs | status |", "|---|---|---|---|---|---|---|---|---|---|"]
    for f in rep["fit"]:
        err = "-" if f["error_pct"] is None else f"{f['error_pct']:+.1f}%"
        if f.get("error_range_pct"):
            err += f" (between {f['error_range_pct'][0]:+.1f}% and {f['error_range_pct'][1]:+.1f}%)"
        lines.append(f"| {f['scenario']} | {f['quant']} | {f['policy']} | {fmt(f['simulated_min_ram_bytes'], MB, 0)} | "
                     f"{fmt(f['measured_min_ram_bytes'], MB, 0)} | {fmt(f['killed_at_bytes'], MB, 0)} | {err} | "
                     f"{fmt(f.get('lowest_single_completion_bytes'), MB, 0)} | {f['runs']} | {f['status']} |")
    lines += ["", "Every limit probed (MB: outcomes in the order run): " + "; ".join(
        f"{f['policy']}: " + ", ".join(f"{int(lim) / MB:.0f} {'/'.join('ok' if o == 'completed' else 'killed' for o in outs)}"
                                       for lim, outs in f["limits_probed"].items()) for f in rep["fit"]) + "."]
    return lines


def md_loads(rep: dict) -> list[str]:
    lines = ["## Load temporaries per module and backend", "",
             "Each load in a new process under atomsim's process settings (peak anonymous memory during the load "
             "above what it keeps). Bound: largest tensor +10%, +8 MB for what any load allocates besides its "
             "tensors (tests/test_load_memory.py).", "",
             "| module | backend | file MB | temporaries MB | of file | largest tensor MB | within | without the 8 MB |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['module']} | {r['backend']} | {r['file_bytes'] / MB:.0f} | {r['load_temporaries_bytes'] / MB:.1f} | "
              f"{r['fraction_of_file']:.1%} | {r['largest_tensor_bytes'] / MB:.0f} | {r['within_bound']} | "
              f"{r['within_bound_without_slack']} |" for r in rep["load_temporaries"]]
    return lines


def markdown(rep: dict, checks: dict, meta: dict) -> str:
    lim = meta["limit_bytes"] / GB
    lines = [f"# The paper at its real size on this machine ({meta['date']})", "",
             f"The paper preset (CLIP ViT-L/14 0.3B, Llama-3.2-1B, BERT decoder 0.3B, MiniLM): assembly and retrieval "
             f"of the 5 clips of a 30 s synthetic video (320x240), fp32 and torch-dynamic-int8, real runs by `atomsim "
             f"run --ram-limit {lim:g}GB` (weight files evicted first, a new process each, 3 interleaved rounds, "
             f"medians over the completed runs) and simulated with `{Path(meta['profile']).relative_to(ROOT)}` "
             f"(measured here) on the host device at RAM {lim:g} GB; peaks are the process's (VmHWM), as the "
             f"simulator's. Machine: 2-core VM, 24 GiB, shared. Made by `python benchmarks/paper_scale.py "
             f"--report-only --commit` from the runs kept in `benchmarks/results/paper-scale-2026-12-03/` "
             f"(`runs.jsonl`, `{FIT_RUNS}`: {meta['fit_runs']} fit runs, `load_temporaries.jsonl`).", "",
             "## Result", "", "Does reuse-parallel beat each baseline here?", ""]
    lines += plain(rep)
    lines += ["", "Bounds of the issue:", ""]
    lines += [f"- {name}: {'holds' if ok else '**misses**'}: {what}" for name, (ok, what) in checks.items()]
    if meta["missing"]:
        lines += ["", "Runs not made (the benchmark stopped before them): " + "; ".join(meta["missing"]) + "."]
    if meta["notes"]:
        lines += ["", meta["notes"].strip()]
    for part in (md_compare, md_table3, md_table8, md_limits, md_loads):
        lines += [""] + part(rep)
    return "\n".join(lines) + "\n"
