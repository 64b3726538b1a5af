"""The paper at its real size on this machine (issue 27): the paper preset (CLIP ViT-L/14, Llama-3.2-1B,
BERT decoder, MiniLM) built, its loads measured, profiled, run for real under a RAM limit and
simulated with the measured profile, beside the paper's Tables 3 and 8.

    python benchmarks/paper_scale.py [--out benchmarks/results/paper-scale-2026-12-03]
        [--work /var/tmp/atomsim-paper-scale] [--profile profiles/host-paper.json] [--store DIR]
        [--quant torch-dynamic-int8 --quant fp32] [--task assembly --task retrieval]
        [--policy reload --policy reload-paper --policy reuse-serial --policy reuse-parallel]
        [--rounds 3] [--ram-limit 6GB] [--skip-loads] [--skip-fit] [--stop-at HH:MM]
        [--report-only] [--commit]

Policies: atomsim's `reload` (the pipeline's baseline variant: BERT decoder for captions),
`reload-paper` (the paper's baseline: `policy: reload`, `variant: none`, the Llama decoder reloaded
per phase and per request), `reuse-serial`, `reuse-parallel`. Steps, each skipped when its result
is already kept (rerun to resume):
1. `atomsim models build --preset paper` of the backends (nothing when built);
2. load temporaries of every module and backend, each load in a new process under atomsim's
   process settings (`profile.memory.measure_module_load`), kept in OUT/load_temporaries.jsonl;
3. `atomsim profile --preset paper --quant ... --quick --out PROFILE` when PROFILE is absent (the
   profiler resumes an interrupted profile itself); its command and seconds in OUT/profile-runs.jsonl;
4. real runs (`run.limit.run_limited`: weight files evicted first, a memory cgroup of --ram-limit,
   swap off) of each task, backend and policy on a 30 s synthetic video (5 clips), rounds
   interleaved, kept in OUT/runs.jsonl; run directories (traces) under --work;
5. the fit boundary of assembly, torch-dynamic-int8, reload and reuse-parallel: simulated by
   bisection, measured by benchmarks/ram_fidelity.py's bisection (3 of 3 runs at a limit), its
   runs kept in OUT/fit_runs.jsonl;
6. the report (benchmarks/paper_scale_report.py): OUT/report.{json,md}, with --commit also
   docs/paper-scale.{json,md}.
`--report-only` makes no run, build or profile (step 6 from what is kept). `--stop-at HH:MM` (UTC):
no real run starts after then (the report is made from what is kept). Exits 1 when a wanted run is
missing or failed, or a bound of the issue does not hold; needs root (the cgroup).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "benchmarks", ROOT / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import paper_scale_report as psr  # noqa: E402
import ram_fidelity as rf  # noqa: E402
from paper_scale_report import FIT, FIT_RUNS, GB, MB, POLICIES, combos, read_jsonl, scenario  # noqa: E402

def say(msg: str) -> None:
    print(msg, flush=True)


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
    from atomsim.errors import AtomsimError
    from atomsim.profile.memory import measure_module_load_in_new_process
    path = a.out / "load_temporaries.jsonl"
    done = {(r["module"], r["backend"]) for r in read_jsonl(path)}
    for quant in a.quant:
        for model in models.MODELS:
            if (model, quant) in done:
                continue
            store = a.store or str(models.default_store())
            try:
                r = measure_module_load_in_new_process("paper", model, quant, store)
            except AtomsimError as e:
                raise SystemExit(str(e)) from None
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
            if time.time() > a.stop_at:
                say(f"--stop-at reached: {key} and the runs after it not started")
                return
            d = a.work / "runs" / key.replace("/", "-").replace("#", "-r")
            d.mkdir(parents=True, exist_ok=True)
            load0, t0 = os.getloadavg()[0], time.time()
            row = {"key": key, "task": task, "quant": quant, "policy": policy, "round": rnd,
                   "limit_bytes": a.limit, "video": v.name}
            try:
                s = run_limited(scenario(a, task, quant, policy), [v], d, a.limit, policy=POLICIES[policy][0],
                                store=a.store, extra_args=["--no-progress"])
                row.update({k: s.get(k) for k in ("outcome", "e2e_s", "peak_bytes", "cgroup_peak_bytes",
                                                  "breakdown_bytes", "stage_totals_s", "killed_steps")})
            except AtomsimError as e:
                row.update(outcome="failed", error=str(e)[:500])
            row.update(wall_s=round(time.time() - t0, 1), loadavg=[round(load0, 2), round(os.getloadavg()[0], 2)])
            append_jsonl(path, row)
            say(f"run {key}: {row['outcome']}, e2e {row.get('e2e_s') or 0:.1f} s, peak "
                f"{(row.get('peak_bytes') or 0) / GB:.2f} GB, cgroup peak {(row.get('cgroup_peak_bytes') or 0) / GB:.2f} GB")


class FitRuns(rf.Runs):
    """benchmarks/ram_fidelity.py's runs under a limit, kept in OUT/fit_runs.jsonl (run directories
    under WORK/fit); after --stop-at no run starts (rf.NotMeasured)."""

    def __init__(self, a):
        (a.work / "fit").mkdir(parents=True, exist_ok=True)
        super().__init__(a.work / "fit", video(a), extra=[a.out / FIT_RUNS])
        self.path, self.stop_at = a.out / FIT_RUNS, a.stop_at

    def run(self, sc_path, policy, limit, repeat=0):
        from atomsim.errors import AtomsimError
        self.offline = time.time() > self.stop_at
        try:
            return super().run(sc_path, policy, limit, repeat)
        except AtomsimError as e:   # not a kill: the run failed (stopped from outside, say): once more
            say(f"fit run at {limit / MB:.0f} MB failed ({e}); running it again")
            return super().run(sc_path, policy, limit, repeat)


def fits(a) -> None:
    """Step 5: each FIT plan's smallest RAM, simulated (1 MB bisection) and measured (3 of 3)."""
    from atomsim.schema.profile import load_profile
    prof, runs = load_profile(a.profile), FitRuns(a)
    for task, quant, policy in FIT:
        sc, atom = scenario(a, task, quant, policy), POLICIES[policy][0]
        smin = rf.sim_min_ram(sc, atom, prof, None)
        say(f"fit {task}/{quant}/{policy}: simulated minimum {smin / MB:.0f} MB")
        try:
            fit, _ = rf.fit_and_outcomes(runs, sc, atom, smin, rf.REPEATS)
        except rf.NotMeasured as e:
            say(f"--stop-at reached: fit run {e} not started")
            return
        say(f"fit {task}/{quant}/{policy}: measured {fit['measured_min_ram_bytes'] / MB:.0f} MB (killed at "
            f"{fit['killed_at_bytes'] / MB:.0f} MB), error {fit['error_pct']:+.1f}%")


def stop_time(text: str | None) -> float:
    """--stop-at HH:MM (UTC, today) as an epoch; no limit when absent."""
    if not text:
        return float("inf")
    h, m = map(int, text.split(":"))
    now = datetime.datetime.now(datetime.timezone.utc)
    return now.replace(hour=h, minute=m, second=0, microsecond=0).timestamp()


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
    ap.add_argument("--policy", action="append", default=None, choices=list(POLICIES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ram-limit", default="6GB")
    ap.add_argument("--skip-loads", action="store_true")
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--stop-at", default=None, metavar="HH:MM", help="UTC: no real run starts after then")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--commit", action="store_true", help="the report to docs/paper-scale.{json,md} too")
    a = ap.parse_args(argv)
    a.quant = a.quant or ["torch-dynamic-int8", "fp32"]
    a.task = a.task or ["assembly", "retrieval"]
    a.policy = a.policy or ["reload", "reload-paper", "reuse-serial", "reuse-parallel"]
    a.limit, a.stop_at = parse_size(a.ram_limit), stop_time(a.stop_at)
    a.profile = a.profile.resolve()
    if a.store:   # ram_fidelity's runs take the default store
        os.environ["ATOMSIM_STORE"] = str(Path(a.store).resolve())
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    if not a.report_only:
        build(a)
        if not a.skip_loads:
            loads(a)
        profile(a)
        real_runs(a)
        if not a.skip_fit:
            fits(a)
    return psr.report(a)


if __name__ == "__main__":
    sys.exit(main())
