"""The paper at its real size on this machine (issue 27): the paper preset (CLIP ViT-L/14, Llama-3.2-1B,
BERT decoder, MiniLM) built, its loads measured, profiled, run for real under a RAM limit and
simulated with the measured profile, beside the paper's Tables 3 and 8.

    python benchmarks/paper_scale.py [--out benchmarks/results/paper-scale-2026-12-03]
        [--work /var/tmp/atomsim-paper-scale] [--profile profiles/host-paper.json] [--store DIR]
        [--quant torch-dynamic-int8 --quant fp32] [--task assembly --task retrieval]
        [--policy reload --policy reuse-serial --policy reuse-parallel] [--rounds 1]
        [--ram-limit 6GB] [--skip-loads] [--report-only]

Steps, each skipped when its result is already kept (rerun to resume):
1. `atomsim models build --preset paper` of the backends (nothing when built);
2. load temporaries of every module and backend, each load in a new process under atomsim's
   process settings (`profile.memory.measure_module_load`), kept in OUT/load_temporaries.jsonl;
3. `atomsim profile --preset paper --quant ... --quick --out PROFILE` when PROFILE is absent (the
   profiler resumes an interrupted profile itself); its command and seconds in OUT/profile-run.json;
4. real runs (`run.limit.run_limited`: weight files evicted first, a memory cgroup of --ram-limit,
   swap off) of each task, backend and policy on a 30 s synthetic video (5 clips), rounds
   interleaved, kept in OUT/runs.jsonl; run directories (traces) under --work;
5. each plan simulated with PROFILE on the host device with RAM = --ram-limit;
6. OUT/report.json ({compare, table3, table8, ram_limit, load_temporaries}) and OUT/report.md.
`--report-only` makes no run, build or profile (step 6 from what is kept). Exits 1 when a real run
did not complete (killed or failed) or a wanted run is missing; needs root (the cgroup).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GB, MB = 10**9, 10**6
PUBLISHED = (ROOT.parent / "shared" / "paper" / "atom-published.yaml", ROOT / "paper" / "atom-published.yaml")
MEASURE = ("import json, sys\n"
           "from atomsim.process import pin_measurement_process, quiet_import_noise\n"
           "pin_measurement_process(); quiet_import_noise()\n"
           "import warnings; warnings.simplefilter('ignore')\n"
           "from atomsim.profile.memory import measure_module_load\n"
           "print(json.dumps(measure_module_load(*sys.argv[1:])))\n")
WORKLOAD = {"assembly": 'task: assembly, prompt: "make a highlight reel of the trip", top_k: 5',
            "retrieval": 'task: retrieval, queries: ["a person is cooking", "a dog runs on the beach"]'}
T3_COL = {"retrieval": 5, "assembly": 6}
T3_QUANT = {"fp32": "fp32", "torch-dynamic-int8": "int8"}


def say(msg: str) -> None:
    print(msg, flush=True)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:   # a line cut by an interruption
            continue
    return out


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def atomsim(*argv) -> tuple[int, float]:
    """`atomsim ARGV` as a user runs it: (exit status, seconds)."""
    t0 = time.time()
    rc = subprocess.call([sys.executable, "-m", "atomsim", *map(str, argv)], cwd=ROOT)
    return rc, round(time.time() - t0, 1)


def build(a) -> None:
    store = ["--store", a.store] if a.store else []
    quants = [x for q in a.quant for x in ("--quant", q)]
    rc, s = atomsim("models", "build", "--preset", "paper", *quants, *store)
    say(f"build: exit {rc}, {s} s")
    if rc:
        raise SystemExit(f"atomsim models build failed (exit {rc})")


def loads(a) -> None:
    """Load temporaries of every module and backend, one new process a load (step 2)."""
    from atomsim import models
    from atomsim.process import measurement_env
    path = a.out / "load_temporaries.jsonl"
    done = {(r["module"], r["backend"]) for r in read_jsonl(path)}
    for quant in a.quant:
        for model in models.MODELS:
            if (model, quant) in done:
                continue
            store = a.store or str(models.default_store())
            out = subprocess.run([sys.executable, "-c", MEASURE, "paper", model, quant, store],
                                 capture_output=True, text=True, env=measurement_env())
            if out.returncode:
                raise SystemExit(f"load of {model}/{quant} failed: {out.stderr[-800:]}")
            r = json.loads(out.stdout.strip().splitlines()[-1])
            append_jsonl(path, r)
            say(f"load {model}/{quant}: temporaries {r['load_temporaries_bytes'] / MB:.0f} MB, file "
                f"{r['file_bytes'] / MB:.0f} MB, largest tensor {r['largest_tensor_bytes'] / MB:.0f} MB")


def profile(a) -> None:
    """`atomsim profile` of the paper preset when the profile is absent (step 3)."""
    if a.profile.exists():
        return
    store = ["--store", a.store] if a.store else []
    quants = [x for q in a.quant for x in ("--quant", q)]
    argv = ["profile", "--preset", "paper", *quants, "--quick", "--out", str(a.profile), "--no-progress", *store]
    rc, s = atomsim(*argv)
    runs = read_jsonl(a.out / "profile-runs.jsonl")
    append_jsonl(a.out / "profile-runs.jsonl", {"command": "atomsim " + " ".join(argv), "exit": rc, "seconds": s,
                                                "attempt": len(runs) + 1, "ended_epoch": time.time()})
    say(f"profile: exit {rc}, {s} s")
    if rc:
        raise SystemExit(f"atomsim profile failed (exit {rc}); rerun to resume it")


def scenario(a, task: str, quant: str) -> Path:
    """The scenario of one task and backend: host device with RAM = the limit, 5 clips."""
    d = a.work / "scenarios"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{task}-paper-{quant}.yaml"
    p.write_text(f"name: {task}-paper-{quant}\ndevice: {{base: host, ram_bytes: {a.limit}, os_reserved_bytes: 0}}\n"
                 f"workload: {{{WORKLOAD[task]}}}\nmodels: {{preset: paper, quant: {quant}}}\n"
                 f"policy: reuse-parallel\nthreads: {{main: 2, encoder: 1, decoder: 1}}\nprofile: {a.profile}\n")
    return p


def combos(a):
    return [(t, q, p) for t in a.task for q in a.quant for p in a.policy]


def video(a) -> Path:
    import videos as tv
    v = a.work / "paper30.mp4"
    if not v.exists():
        tv.make_video(v, seconds=30.0, width=320, height=240, fps=10)
    return v


def real_runs(a) -> None:
    """Step 4: every combination, round by round (a round runs each once), kept as it ends."""
    from atomsim.errors import AtomsimError
    from atomsim.run.limit import run_limited
    path = a.out / "runs.jsonl"
    done = {r["key"] for r in read_jsonl(path)}
    v = video(a)
    for rnd in range(a.rounds):
        for task, quant, policy in combos(a):
            key = f"{task}/{quant}/{policy}#{rnd}"
            if key in done:
                continue
            d = a.work / "runs" / key.replace("/", "-").replace("#", "-r")
            d.mkdir(parents=True, exist_ok=True)
            load0, t0 = os.getloadavg()[0], time.time()
            row = {"key": key, "task": task, "quant": quant, "policy": policy, "round": rnd,
                   "limit_bytes": a.limit, "video": v.name}
            try:
                s = run_limited(scenario(a, task, quant), [v], d, a.limit, policy=policy, store=a.store,
                                extra_args=["--no-progress"])
                row.update({k: s.get(k) for k in ("outcome", "e2e_s", "peak_bytes", "cgroup_peak_bytes",
                                                  "breakdown_bytes", "stage_totals_s", "killed_steps")})
            except AtomsimError as e:
                row.update(outcome="failed", error=str(e)[:500])
            row.update(wall_s=round(time.time() - t0, 1), loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)])
            append_jsonl(path, row)
            say(f"run {key}: {row['outcome']}, e2e {row.get('e2e_s') or 0:.1f} s, peak "
                f"{(row.get('peak_bytes') or 0) / GB:.2f} GB, cgroup peak {(row.get('cgroup_peak_bytes') or 0) / GB:.2f} GB")


def simulated(a) -> dict:
    """Step 5: {(task, quant, policy): simulated summary} with the measured profile."""
    from atomsim.schema.profile import load_profile
    from atomsim.schema.scenario import load_scenario
    from atomsim.sim import simulate
    prof = load_profile(a.profile)
    out = {}
    for task, quant, policy in combos(a):
        s = simulate(load_scenario(scenario(a, task, quant)), prof, policy).summary
        out[(task, quant, policy)] = s
    return out


def pct(a, b):
    return None if a is None or b in (None, 0) else round((a - b) / b * 100, 1)


def reduction(base, atom):
    """How much shorter `atom` is than `base`, % of `base` (negative: longer)."""
    return None if base in (None, 0) or atom is None else round((base - atom) / base * 100, 1)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def compare_rows(a, runs: list[dict], sims: dict) -> list[dict]:
    rows = []
    for task, quant, policy in combos(a):
        mine = [r for r in runs if (r["task"], r["quant"], r["policy"]) == (task, quant, policy)
                and r.get("outcome") == "completed"]
        s = sims[(task, quant, policy)]
        me, mp = median(r.get("e2e_s") for r in mine), median(r.get("peak_bytes") for r in mine)
        se, sp = s["e2e_s"] if s.get("completed") else None, s["peak_bytes"]
        load = median(r["loadavg"][0] for r in mine if r.get("loadavg"))
        rows.append({"scenario": task, "policy": policy, "quant": quant, "runs_completed": len(mine),
                     "loadavg_at_start": load,
                     "measured_e2e_s": me, "simulated_e2e_s": se, "e2e_error_pct": pct(se, me),
                     "measured_peak_bytes": mp, "simulated_peak_bytes": sp, "peak_error_pct": pct(sp, mp),
                     "simulated_completed": bool(s.get("completed"))})
    return rows


def table3_rows(a, pub: dict, rows: list[dict]) -> list[dict]:
    """Reduction of reuse-parallel's e2e against each baseline policy run, beside Table 3's."""
    t3 = pub["table3_latency_s"]

    def paper(quant, device, task):
        d = t3.get(T3_QUANT[quant], {}).get(device)
        if not d:
            return None
        rl, ru = d["reload"][T3_COL[task]], d["reuse"][T3_COL[task]]
        return round((rl - ru) / rl * 100, 1)
    out = []
    for r in rows:
        if r["policy"] in ("reuse-parallel", "reuse-serial"):
            continue
        atom = next((x for x in rows if (x["scenario"], x["quant"], x["policy"]) ==
                     (r["scenario"], r["quant"], "reuse-parallel")), None)
        if atom is None:
            continue
        phones = [paper(r["quant"], d, r["scenario"]) for d in ("pixel_5a", "pixel_8a", "galaxy_s23")]
        out.append({"task": r["scenario"], "quant": r["quant"], "baseline": r["policy"],
                    "measured_reduction_pct": reduction(r["measured_e2e_s"], atom["measured_e2e_s"]),
                    "simulated_reduction_pct": reduction(r["simulated_e2e_s"], atom["simulated_e2e_s"]),
                    "paper_x86_reduction_pct": paper(r["quant"], "x86_cpu", r["scenario"]),
                    "paper_phone_reduction_pct": [p for p in phones if p is not None] or None,
                    "threads": "this machine: 2 cores (main 2, encoder 1, decoder 1); paper: x86 96 cores, phones 8"})
    return out


def table8_rows(a, pub: dict, runs: list[dict], sims: dict) -> list[dict]:
    """The peak's parts of the assembly (median over completed runs), beside Table 8's."""
    t8 = pub["table8_memory_gb"]
    out = []
    for quant in a.quant:
        for policy, paper_key in (("reload", "reload"), ("reuse-parallel", "reuse")):
            if ("assembly", quant, policy) not in sims:
                continue
            mine = [r for r in runs if (r["task"], r["quant"], r["policy"]) == ("assembly", quant, policy)
                    and r.get("outcome") == "completed" and r.get("breakdown_bytes")]
            sb = sims[("assembly", quant, policy)].get("breakdown_bytes") or {}
            for part in ("weights", "inputs", "activations", "load_temporaries", "baseline", "peak"):
                meas = median((r["peak_bytes"] if part == "peak" else r["breakdown_bytes"].get(part)) for r in mine)
                sim = sims[("assembly", quant, policy)]["peak_bytes"] if part == "peak" else sb.get(part)
                out.append({"policy": policy, "quant": quant, "part": part, "paper_gb": t8[paper_key].get(part),
                            "measured_gb": None if meas is None else round(meas / GB, 3),
                            "simulated_gb": None if sim is None else round(sim / GB, 3)})
    return out


def ram_limit_rows(runs: list[dict], sims: dict) -> list[dict]:
    out = []
    for (task, quant, policy), s in sims.items():
        mine = [r for r in runs if (r["task"], r["quant"], r["policy"]) == (task, quant, policy)]
        out.append({"scenario": task, "policy": policy, "quant": quant,
                    "limit_bytes": mine[0]["limit_bytes"] if mine else None,
                    "outcome": [r.get("outcome") for r in mine],
                    "simulated_outcome": "completed" if s.get("completed") else "oom"})
    return out


def load_rows(a) -> list[dict]:
    keep = ("module", "backend", "file_bytes", "kept_bytes", "load_temporaries_bytes", "largest_tensor_bytes")
    rows = [{k: r[k] for k in keep} for r in read_jsonl(a.out / "load_temporaries.jsonl")]
    for r in rows:
        r["within_bound"] = r["load_temporaries_bytes"] <= 1.1 * r["largest_tensor_bytes"] + 8 * MB
        r["fraction_of_file"] = round(r["load_temporaries_bytes"] / r["file_bytes"], 4)
    return rows


def fmt(x, scale=1.0, nd=2):
    return "-" if x is None else f"{x / scale:.{nd}f}"


def markdown(rep: dict) -> str:
    lines = [f"# Paper scale on this machine ({rep['date']})", "", rep["method"], "",
             "| task | backend | policy | runs done | e2e s measured | simulated | err % | peak GB measured | simulated | err % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["compare"]:
        lines.append(f"| {r['scenario']} | {r['quant']} | {r['policy']} | {r['runs_completed']} | {fmt(r['measured_e2e_s'])} | "
                     f"{fmt(r['simulated_e2e_s'])} | {fmt(r['e2e_error_pct'], nd=1)} | {fmt(r['measured_peak_bytes'], GB)} | "
                     f"{fmt(r['simulated_peak_bytes'], GB)} | {fmt(r['peak_error_pct'], nd=1)} |")
    lines += ["", "Load average at the runs' start (median): " + ", ".join(
        f"{r['scenario']}/{r['quant']}/{r['policy']} {fmt(r['loadavg_at_start'], nd=1)}" for r in rep["compare"]
        if r["runs_completed"]) + " (2 cores, shared: end-to-end times drift with it).",
              "", "Reduction of reuse-parallel's end-to-end time against each baseline (Table 3; negative: "
              "reuse-parallel slower). atomsim's `reload` captions with the BERT decoder and loads the Llama "
              "decoder only for scripts, per request; the paper's baseline reloads the same modules:", "",
              "| task | backend | baseline | measured % | simulated % | paper x86 % | paper phones % |", "|---|---|---|---|---|---|---|"]
    for r in rep["table3"]:
        lines.append(f"| {r['task']} | {r['quant']} | {r['baseline']} | {fmt(r['measured_reduction_pct'], nd=1)} | "
                     f"{fmt(r['simulated_reduction_pct'], nd=1)} | {fmt(r['paper_x86_reduction_pct'], nd=1)} | "
                     f"{r['paper_phone_reduction_pct']} |")
    lines += ["", "Peak parts of the assembly, GB (Table 8; the paper does not say its backend). The runner counts "
              "a module whose load is running at the peak as load temporaries whole (its weights are known when "
              "the load ends: run/memory.py); the simulator splits it into weights and the profile's load "
              "temporaries (the load temporaries measured alone are in the last table):", "",
              "| backend | policy | part | paper | measured | simulated |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['quant']} | {r['policy']} | {r['part']} | {fmt(r['paper_gb'], nd=3)} | {fmt(r['measured_gb'], nd=3)} | "
              f"{fmt(r['simulated_gb'], nd=3)} |" for r in rep["table8"]]
    lines += ["", f"Under --ram-limit {rep['limit_bytes'] / GB:g} GB:", "", "| task | backend | policy | real runs | simulated |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['scenario']} | {r['quant']} | {r['policy']} | {', '.join(map(str, r['outcome'])) or '-'} | "
              f"{r['simulated_outcome']} |" for r in rep["ram_limit"]]
    lines += ["", "Load temporaries (a new process each; bound: largest tensor +10% +8 MB):", "",
              "| module | backend | file MB | temporaries MB | of file | largest tensor MB | within |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['module']} | {r['backend']} | {r['file_bytes'] / MB:.0f} | {r['load_temporaries_bytes'] / MB:.1f} | "
              f"{r['fraction_of_file']:.1%} | {r['largest_tensor_bytes'] / MB:.0f} | {r['within_bound']} |"
              for r in rep["load_temporaries"]]
    return "\n".join(lines) + "\n"


def report(a) -> int:
    import yaml

    from atomsim.io import atomic_write_json, atomic_write_text
    pub = yaml.safe_load(next(p for p in PUBLISHED if p.exists()).read_text())
    runs, sims = read_jsonl(a.out / "runs.jsonl"), simulated(a)
    rows = compare_rows(a, runs, sims)
    rep = {"date": time.strftime("%Y-%m-%d"), "limit_bytes": a.limit, "profile": str(a.profile),
           "method": (f"5 clips of a 30 s synthetic video (320x240), real runs by `atomsim run --ram-limit "
                      f"{a.limit / GB:g}GB` (weights evicted first, a new process each), medians over completed "
                      f"rounds; simulated with {a.profile.name} on the host device at RAM {a.limit / GB:g} GB; "
                      "peaks are the process's (VmHWM), as the simulator's."),
           "compare": rows, "table3": table3_rows(a, pub, rows), "table8": table8_rows(a, pub, runs, sims),
           "ram_limit": ram_limit_rows(runs, sims), "load_temporaries": load_rows(a)}
    atomic_write_json(a.out / "report.json", rep)
    text = markdown(rep)
    atomic_write_text(a.out / "report.md", text)
    say(text)
    wanted = {f"{t}/{q}/{p}#{i}" for t, q, p in combos(a) for i in range(a.rounds)}
    got = {r["key"]: r for r in runs}
    bad = sorted(k for k in wanted if got.get(k, {}).get("outcome") != "completed")
    for k in bad:
        say(f"not completed: {k} ({got[k]['outcome'] if k in got else 'not run'})")
    return 1 if bad else 0


def main(argv=None) -> int:
    from atomsim.process import pin_measurement_process, quiet_import_noise
    pin_measurement_process()
    quiet_import_noise()
    from atomsim.run.limit import parse_size
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper-scale-2026-12-03")
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/atomsim-paper-scale"))
    ap.add_argument("--profile", type=Path, default=ROOT / "profiles" / "host-paper.json")
    ap.add_argument("--store", default=None)
    ap.add_argument("--quant", action="append", default=None)
    ap.add_argument("--task", action="append", default=None)
    ap.add_argument("--policy", action="append", default=None)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--ram-limit", default="6GB")
    ap.add_argument("--skip-loads", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    a = ap.parse_args(argv)
    a.quant = a.quant or ["torch-dynamic-int8", "fp32"]
    a.task = a.task or ["assembly", "retrieval"]
    a.policy = a.policy or ["reload", "reuse-serial", "reuse-parallel"]
    a.limit = parse_size(a.ram_limit)
    a.profile = a.profile.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        build(a)
        if not a.skip_loads:
            loads(a)
        profile(a)
        real_runs(a)
    return report(a)


if __name__ == "__main__":
    sys.exit(main())
