"""The simulator's memory predictions against real runs under RAM limits (memory cgroups).

    python benchmarks/ram_fidelity.py [--profile profiles/host-small-ram.json] [--out out/ram-fidelity]

Needs root (a writable memory cgroup). For the small preset, fp32 and torch-dynamic-int8, and
the policies reload, reuse-serial, reuse-parallel and baseline-resident (an assembly of the 2
clips of a 15 s video the benchmark makes):
- fit boundary: the simulator's smallest RAM at which the plan completes (bisection to 1 MB;
  deterministic) against the smallest limit at which the real run completes every time
  (bisection until the gap between a killed and a completed limit is at most 2% or 16 MB; a
  limit counts as completed when --repeats runs there all complete, as killed when one is
  killed: where the encoder and a load overlap, which allocation meets which varies between
  runs, and a single run can complete below a limit that kills others);
- outcomes: the real run at the simulated minimum -10% and +10% (predicted: killed, completed;
  measured as for the fit);
- page cache: a 3-request reload workload (1 clip) at a tight limit, where the simulator predicts the
  reloads of requests 2 and 3 read from storage, and at a generous one, where it predicts they
  do not: per load, predicted and measured bytes read and cold/warm;
- end-to-end time of every completed run beside the simulated one (no bound: this machine's
  speed drifts).
Writes `fidelity-ram.json` (the shape in docs/fidelity-ram.md) and `fidelity-ram.md` into --out;
`--commit` copies them to docs/. Real runs are kept in `runs.jsonl`: an interrupted benchmark
resumes where it stopped. Exits 1 when a bound does not hold. `--scenario FILE`: the fit and the
outcomes of that scenario (a user's pipeline, say) instead, no page-cache part; `--commit` writes
docs/fidelity-ram-<scenario name>.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atomsim.schema.profile import load_profile  # noqa: E402
from atomsim.schema.scenario import load_scenario  # noqa: E402
from atomsim.sim import simulate  # noqa: E402

POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")
QUANTS = ("fp32", "torch-dynamic-int8")
MB = 10**6
FIT_BOUND_PCT, OUTCOME_STEP, REPEATS = 5.0, 0.10, 3
READ_TOL_PCT, READ_TOL_BYTES, COLD_AGREE = 10.0, 16 * MB, 0.90


def scenario_file(d: Path, quant: str, profile: Path, requests: int = 1, clips: int = 2) -> Path:
    p = d / f"ram-{quant}-r{requests}.yaml"
    p.write_text(
        f"name: ram-{quant}{'' if requests == 1 else f'-{requests}req'}\ndevice: host\n"
        f"workload: {{task: assembly, prompt: make a highlight reel, top_k: 2, requests: {requests}, clips: {clips}}}\n"
        f"models: {{preset: small, quant: {quant}}}\npolicy: reload\nprofile: {profile}\n")
    return p


def sim(sc_path: Path, policy: str, ram: int, profile, clips: int):
    sc = load_scenario(sc_path).with_changes(**{"device.ram_bytes": int(ram)})
    return simulate(sc, profile, policy, clips=clips)


def sim_min_ram(sc_path, policy, profile, clips) -> int:
    lo, hi = 1, 64 * 10**9
    while hi - lo > MB:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if sim(sc_path, policy, mid, profile, clips).summary["completed"] else (mid, hi)
    return hi


class NotMeasured(Exception):
    """--report-only: a run the report needs was not made."""


class Runs:
    """Real runs under a limit, cached in runs.jsonl (resumable); `extra` run files are read too
    (runs made by other invocations, e.g. one per policy in parallel); `offline`: make no run."""

    def __init__(self, out: Path, video: Path, extra=(), offline: bool = False):
        self.path, self.video, self.out, self.offline = out / "runs.jsonl", video, out, offline
        self.done = {}
        for path in [*extra, self.path]:
            if not Path(path).exists():
                continue
            for line in Path(path).read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.done[r["key"]] = r

    def run(self, sc_path: Path, policy: str, limit: int, repeat: int = 0) -> dict:
        """One real run (`repeat` > 0: another run at the same limit, its own key)."""
        from atomsim.run.limit import run_limited
        key = f"{sc_path.stem}/{policy}/{limit}" + (f"#{repeat}" if repeat else "")
        if key not in self.done and self.offline:
            raise NotMeasured(key)
        if key not in self.done:
            d = Path(tempfile.mkdtemp(dir=self.out, prefix="run-"))
            s = run_limited(sc_path, [self.video], d, limit, policy=policy, extra_args=["--no-progress"])
            r = {"key": key, "outcome": s["outcome"], "e2e_s": s.get("e2e_s"), "cgroup_peak_bytes": s["cgroup_peak_bytes"],
                 "peak_bytes": s.get("peak_bytes"), "killed_steps": s.get("killed_steps"), "loads": s.get("loads", [])}
            with open(self.path, "a") as f:
                f.write(json.dumps(r) + "\n")
            self.done[key] = r
            print(f"  {key}: {r['outcome']} (cgroup peak {r['cgroup_peak_bytes'] / MB:.0f} MB)", flush=True)
        return self.done[key]

    def probe(self, sc_path: Path, policy: str, limit: int, repeats: int) -> str:
        """The outcome at a limit: `oom-killed` at the first killed run, `completed` when
        `repeats` runs all completed."""
        for i in range(repeats):
            if self.run(sc_path, policy, limit, i)["outcome"] != "completed":
                return "oom-killed"
        return "completed"

    def of(self, sc_path: Path, policy: str) -> dict[int, list[dict]]:
        """The runs made of one plan, by limit (ascending), each limit's runs in the order made."""
        out: dict[int, list[dict]] = {}
        for key, r in self.done.items():
            stem, pol, lim = key.split("/")
            if stem == sc_path.stem and pol == policy:
                out.setdefault(int(lim.split("#")[0]), []).append(r)
        return dict(sorted(out.items()))


def verdict(made: list[dict], repeats: int) -> str | None:
    """A limit's outcome from the runs made there: killed if one was, completed if `repeats` all
    completed, None (undecided) otherwise."""
    if any(r["outcome"] != "completed" for r in made):
        return "oom-killed"
    return "completed" if len(made) >= repeats else None


def boundary(verdicts: dict[int, str]) -> tuple[int | None, int | None]:
    """(highest killed limit, lowest completed limit above it): the real boundary lies between."""
    lo = max((lim for lim, v in verdicts.items() if v == "oom-killed"), default=None)
    hi = min((lim for lim, v in verdicts.items() if v == "completed" and (lo is None or lim > lo)), default=None)
    return lo, hi


def fit_row(smin: int, lo, hi, made: dict[int, list[dict]], repeats: int) -> dict:
    any_done = [lim for lim, rs in made.items() if any(r["outcome"] == "completed" for r in rs)]
    return {"simulated_min_ram_bytes": smin, "measured_min_ram_bytes": hi, "killed_at_bytes": lo,
            "error_pct": round((smin - hi) / hi * 100, 2) if hi else None, "repeats": repeats,
            "lowest_single_completion_bytes": min(any_done, default=None),
            "runs": sum(len(rs) for rs in made.values())}


def fit_and_outcomes(runs: Runs, sc_path, policy, smin: int, repeats: int = REPEATS) -> tuple[dict, list[dict]]:
    """Real runs at smin -10% and +10%, then bisection of the real boundary (every limit probed
    `repeats` times unless a run there is killed)."""
    below, above = int(smin * (1 - OUTCOME_STEP)), int(smin * (1 + OUTCOME_STEP))
    outcomes = [{"ram_limit_bytes": lim, "predicted": pred, "measured": runs.probe(sc_path, policy, lim, repeats)}
                for lim, pred in ((below, "oom-killed"), (above, "completed"))]
    verdicts = {lim: v for lim, rs in runs.of(sc_path, policy).items() if (v := verdict(rs, repeats))}
    step = OUTCOME_STEP
    while boundary(verdicts)[0] is None:     # the real boundary lies lower: widen downwards
        step += OUTCOME_STEP
        lim = int(smin * (1 - step))
        verdicts[lim] = runs.probe(sc_path, policy, lim, repeats)
    step = OUTCOME_STEP
    while boundary(verdicts)[1] is None:     # no completed limit above the killed ones: widen upwards
        step += OUTCOME_STEP
        lim = int(smin * (1 + step))
        verdicts[lim] = runs.probe(sc_path, policy, lim, repeats)
    lo, hi = boundary(verdicts)
    while hi - lo > max(16 * MB, 0.02 * hi):
        mid = (lo + hi) // 2
        verdicts[mid] = runs.probe(sc_path, policy, mid, repeats)
        lo, hi = boundary(verdicts)
    return {**fit_row(smin, lo, hi, runs.of(sc_path, policy), repeats), "status": "bisected"}, outcomes


def fit_from_cache(runs: Runs, sc_path, policy, smin: int, repeats: int = REPEATS) -> tuple[dict, list[dict]]:
    """The fit and outcomes from the runs made (--report-only): a bracket where the bisection did
    not finish, `status` saying which."""
    below, above = int(smin * (1 - OUTCOME_STEP)), int(smin * (1 + OUTCOME_STEP))
    made = runs.of(sc_path, policy)
    verdicts = {lim: v for lim, rs in made.items() if (v := verdict(rs, repeats))}
    outcomes = [{"ram_limit_bytes": lim, "predicted": pred, "measured": verdicts[lim]}
                for lim, pred in ((below, "oom-killed"), (above, "completed")) if lim in verdicts]
    lo, hi = boundary(verdicts)
    finished = hi is not None and lo is not None and hi - lo <= max(16 * MB, 0.02 * hi)
    fit = {**fit_row(smin, lo, hi, made, repeats),
           "status": "bisected" if finished else f"not finished: {sum(map(len, made.values()))} runs made"}
    if not finished and hi and lo:
        fit["error_range_pct"] = [round((smin - hi) / hi * 100, 2), round((smin - lo) / lo * 100, 2)]
    return fit, outcomes


def page_cache(runs: Runs, sc3: Path, profile, clips: int, smin3: int) -> tuple[list[dict], dict]:
    """3-request reload at a tight and at a generous limit: per load, predicted vs measured reads."""
    rows, limits = [], {"tight": int(smin3 * 1.05), "generous": 8 * 10**9}
    for case, lim in limits.items():
        pred = sim(sc3, "reload", lim, profile, clips).loads
        real = runs.run(sc3, "reload", lim)
        if real["outcome"] != "completed":
            rows.append({"scenario": sc3.stem, "case": case, "ram_limit_bytes": lim, "error": real["outcome"]})
            continue
        for p, m in zip(pred, real["loads"]):
            assert p["step"] == m["step"], (p["step"], m["step"])
            rows.append({"scenario": sc3.stem, "case": case, "ram_limit_bytes": lim, "request": p["request"],
                         "module": p["module"], "predicted_read_bytes": p["read_bytes"],
                         "measured_read_bytes": m["read_bytes"], "predicted_cold": not p["warm"],
                         "measured_cold": m["cold"]})
    return rows, limits


def check(report: dict) -> list[str]:
    bad = [f"fit {f['scenario']}/{f['policy']}: " + (f"{f['error_pct']:+.1f}%" if f["error_pct"] is not None else "")
           + (f" ({f['status']})" if f.get("status", "bisected") != "bisected" else "") for f in report["fit"]
           if f["error_pct"] is None or abs(f["error_pct"]) > FIT_BOUND_PCT or f.get("status", "bisected") != "bisected"]
    bad += [f"outcome {o['scenario']}/{o['policy']} at {o['ram_limit_bytes'] / MB:.0f} MB: predicted {o['predicted']}, "
            f"measured {o['measured']}" for o in report["outcomes"] if o["predicted"] != o["measured"]]
    loads = [ld for ld in report["loads"] if "error" not in ld]
    bad += [f"load {ld['scenario']} r{ld['request']} {ld['module']}: read {ld['measured_read_bytes']} vs "
            f"{ld['predicted_read_bytes']}" for ld in loads
            if abs(ld["measured_read_bytes"] - ld["predicted_read_bytes"])
            > max(READ_TOL_BYTES, READ_TOL_PCT / 100 * max(ld["predicted_read_bytes"], 1))]
    agree = sum(ld["predicted_cold"] == ld["measured_cold"] for ld in loads) / max(1, len(loads))
    if report["meta"].get("page_cache", True) and (agree < COLD_AGREE or len(loads) < len(report["loads"])):
        bad.append(f"cold/warm agree on {agree:.0%} of loads (of {len(loads)} measured)")
    return bad


def times(runs: Runs, sc_path, policy, profile, clips) -> list[dict]:
    out = []
    for lim, made in runs.of(sc_path, policy).items():
        r = made[0]
        if r["outcome"] == "completed":
            s = sim(sc_path, policy, lim, profile, clips).summary
            out.append({"scenario": sc_path.stem, "policy": policy, "ram_limit_bytes": lim, "measured_e2e_s": r["e2e_s"],
                        "simulated_e2e_s": round(s["e2e_s"], 3), "simulated_completed": s["completed"]})
    return out


def markdown(report: dict, bad: list[str]) -> str:
    m = report["meta"]
    lines = ["# RAM-limit fidelity: the simulator's memory predictions against real runs in memory cgroups", "",
             f"Made by `python benchmarks/ram_fidelity.py {m.get('args', '--commit')}` on {m['date']} ({m['machine']}), "
             f"profile `{m['profile']}`, {m.get('what', 'small preset, assembly')} of the {m['clips']} clips of a "
             f"{m['video_s']} s video. "
             "What a limit counts, and why: [docs/running.md](running.md#ram-limits).", "",
             "## Fit boundary: the smallest RAM at which the run completes", "",
             "| scenario | policy | simulated (MB) | measured: completed every time at (MB) | killed at (MB) | "
             "error | lowest single completion (MB) | runs |",
             "|---|---|---|---|---|---|---|---|"]
    def mb(x):
        return "-" if x is None else f"{x / MB:.0f}"
    for f in report["fit"]:
        err = "-" if f["error_pct"] is None else f"{f['error_pct']:+.1f}%"
        if f.get("error_range_pct"):
            err += f" (bisection not finished: {f['error_range_pct'][0]:+.1f}% .. {f['error_range_pct'][1]:+.1f}%)"
        lines.append(f"| {f['scenario']} | {f['policy']} | {mb(f['simulated_min_ram_bytes'])} | "
                     f"{mb(f['measured_min_ram_bytes'])} | {mb(f['killed_at_bytes'])} | {err} | "
                     f"{mb(f.get('lowest_single_completion_bytes'))} | {f.get('runs', '-')} |")
    reps = max((f.get("repeats", 1) for f in report["fit"]), default=1)
    lines += ["", f"Bound: \\|error\\| <= {FIT_BOUND_PCT:.0f}% for every policy. The measured minimum is the smallest "
              f"limit, above every limit where a run was killed, at which {reps} of {reps} runs completed; a run was "
              "killed at the limit beside it. Where the encoder runs beside a load, which allocation meets which "
              "differs between runs: a single run may complete lower (the column beside), and then be killed a few "
              "MB above.", "",
              "## Outcomes at the simulated minimum -10% and +10%", "",
              "| scenario | policy | limit (MB) | predicted | measured |", "|---|---|---|---|---|"]
    for o in report["outcomes"]:
        lines.append(f"| {o['scenario']} | {o['policy']} | {o['ram_limit_bytes'] / MB:.0f} | {o['predicted']} | "
                     f"{o['measured']} |")
    lines += ["", "## Page cache: a 3-request reload, per load", "",
              "| scenario | case | limit (MB) | request | module | predicted read (MB) | measured read (MB) | "
              "predicted | measured |", "|---|---|---|---|---|---|---|---|---|"]
    for ld in report["loads"]:
        if "error" in ld:
            lines.append(f"| {ld['scenario']} | {ld['case']} | {ld['ram_limit_bytes'] / MB:.0f} | {ld['error']} |||||")
            continue
        cold = lambda c: "cold" if c else "warm"  # noqa: E731
        lines.append(f"| {ld['scenario']} | {ld['case']} | {ld['ram_limit_bytes'] / MB:.0f} | {ld['request'] + 1} | "
                     f"{ld['module']} | {ld['predicted_read_bytes'] / MB:.1f} | {ld['measured_read_bytes'] / MB:.1f} | "
                     f"{cold(ld['predicted_cold'])} | {cold(ld['measured_cold'])} |")
    lines += ["", "## End-to-end time of the completed runs (no bound: this machine's speed drifts)", "",
              "| scenario | policy | limit (MB) | measured (s) | simulated (s) |", "|---|---|---|---|---|"]
    for t in report["times"]:
        sim_s = f"{t['simulated_e2e_s']:.2f}" if t.get("simulated_completed", True) else "out of memory"
        lines.append(f"| {t['scenario']} | {t['policy']} | {t['ram_limit_bytes'] / MB:.0f} | {t['measured_e2e_s']:.2f} | "
                     f"{sim_s} |")
    lines += ["", "## Result", "", "Every bound holds." if not bad else "Bounds that do not hold:", ""]
    lines += [f"- {b}" for b in bad]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import platform
    from datetime import date

    from atomsim.io import atomic_write_json, atomic_write_text
    from atomsim.run.synthetic import make_video
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "host-small-ram.json"))
    ap.add_argument("--out", default="out/ram-fidelity")
    ap.add_argument("--quant", action="append", default=None, help="fp32 | torch-dynamic-int8 (default both)")
    ap.add_argument("--policy", action="append", default=None)
    ap.add_argument("--repeats", type=int, default=REPEATS,
                    help="runs at a limit before it counts as completed (one killed run: killed); default %(default)s")
    ap.add_argument("--commit", action="store_true", help="copy the report to docs/fidelity-ram.{md,json}")
    ap.add_argument("--only", choices=("fit", "page-cache"), default=None, help="one part of the benchmark")
    ap.add_argument("--runs", nargs="*", default=(), metavar="JSONL", help="runs.jsonl files of other invocations to use")
    ap.add_argument("--report-only", action="store_true",
                    help="make no run: the report from the runs made (unfinished bisections as brackets)")
    ap.add_argument("--scenario", metavar="FILE", default=None,
                    help="the fit of this scenario (its pipeline, models and quantization) under each --policy, on "
                    "the 2 clips of the benchmark's 15 s video, instead of the small assembly (no page-cache part)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    profile_path = Path(a.profile).resolve()
    profile = load_profile(profile_path)
    video = out / "video-15s.mp4"
    if not video.exists():
        make_video(video, seconds=15.0, width=320, height=240, fps=10)
    clips = 2
    runs = Runs(out, video, extra=a.runs, offline=a.report_only)
    report = {"fit": [], "outcomes": [], "loads": [], "times": []}
    for quant in (a.quant or QUANTS) if not a.scenario else [None]:
        sc = scenario_file(out, quant, profile_path) if not a.scenario else Path(a.scenario).resolve()
        for policy in (a.policy or POLICIES) if a.only != "page-cache" else ():
            smin = sim_min_ram(sc, policy, profile, clips)
            print(f"{sc.stem} {policy}: simulated minimum {smin / MB:.0f} MB", flush=True)
            fit, outcomes = (fit_from_cache if a.report_only else fit_and_outcomes)(runs, sc, policy, smin, a.repeats)
            report["fit"].append({"scenario": sc.stem, "policy": policy, **fit})
            report["outcomes"] += [{"scenario": sc.stem, "policy": policy, **o} for o in outcomes]
            report["times"] += times(runs, sc, policy, profile, clips)
        if a.only == "fit" or a.scenario:
            continue
        sc3 = scenario_file(out, quant, profile_path, requests=3, clips=1)   # 1 clip: loads are what it is about
        try:
            rows, _ = page_cache(runs, sc3, profile, 1, sim_min_ram(sc3, "reload", profile, 1))
        except NotMeasured as e:
            rows = [{"scenario": sc3.stem, "case": "-", "ram_limit_bytes": 0, "error": f"not measured ({e})"}]
        report["loads"] += rows
        report["times"] += times(runs, sc3, "reload", profile, 1)
    report["meta"] = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.node()}",
                      "profile": str(profile_path.relative_to(ROOT)) if profile_path.is_relative_to(ROOT) else str(profile_path),
                      "clips": clips, "video_s": 15.0}
    if a.scenario:
        sc = load_scenario(a.scenario)
        rel = Path(a.scenario).resolve()
        rel = rel.relative_to(ROOT) if rel.is_relative_to(ROOT) else rel
        report["meta"].update(page_cache=False, what=f"scenario `{rel}` (pipeline {sc.pipeline and Path(sc.pipeline).name},"
                              f" {sc.models.quant})", args=f"--scenario {rel} --profile {report['meta']['profile']} "
                              + "".join(f"--policy {p} " for p in (a.policy or POLICIES)) + "--commit")
    bad = check(report)
    atomic_write_json(out / "fidelity-ram.json", report)
    atomic_write_text(out / "fidelity-ram.md", markdown(report, bad))
    if a.commit:   # a scenario's report beside the paper's: docs/fidelity-ram-<scenario>.{json,md}
        name = "fidelity-ram" + (f"-{Path(a.scenario).stem}" if a.scenario else "")
        atomic_write_json(ROOT / "docs" / f"{name}.json", report)
        atomic_write_text(ROOT / "docs" / f"{name}.md", markdown(report, bad))
    print(markdown(report, bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
