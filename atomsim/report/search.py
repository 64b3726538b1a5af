"""`atomsim search`: the fastest schedule that fits each RAM budget, and the time-versus-RAM front.

A schedule (a candidate) is a policy with its settings: for a fixed policy (reload, reuse-serial,
reuse-parallel, baseline-resident) its threads and queue; for a budget policy (plan/budget.py:
budget-lru, budget-cost, budget-belady, budget-optimal) also the lanes (serial or parallel) and per
module keep, reload or rule; each for every variant of the pipeline's modules (its own, `none`,
and e.g. the paper's `baseline`). Every candidate is simulated at every budget (the device's RAM
set to it: budget policies plan for it, the page cache lives in it) by the sweep's executors
(local processes or Dask, resumable: DIR/points/). Then:

- DIR/candidates.csv and .parquet: a row per candidate and budget: its settings, e2e_s,
  peak_bytes and peak_high_bytes (the top of the peak's range: two lanes' ops in one heap, and
  ops whose profiling rounds peaked above their median: sim/engine.py), the breakdown, loads and
  bytes read, energy, and `fits` (it completed without running out of memory in the budget less a margin, `--margin`, default 10%, and the top
  of its range is within that too: the searched and fixed schedules of docs/search-proof.md
  measured up to 7.6% above their simulated peaks, and a run planned to the last byte is killed);
- DIR/pareto.csv: the candidates that fit, not beaten on both e2e and peak by another;
- DIR/best-<SIZE>.yaml per budget (named as given: `--ram 4GB` -> best-4GB.yaml): a scenario of the
  fastest candidate that fits, which `simulate`, `run` and `validate` take as they are;
- DIR/search.json: per budget the best candidate and the best fixed policy that fits;
- DIR/pareto.png: e2e against peak, the front, each budget and its best.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..schema.names import BUDGET_POLICIES, FIXED_POLICIES
from ..schema.pipeline import scenario_pipeline
from ..schema.scenario import Scenario, load_scenario

MARKS = ("rule", "keep", "reload")
# headroom kept below each budget: measured peaks up to 7.6% above simulated ones (docs/search-proof.md);
# a schedule simulated at 0.5% under a limit was killed 2 runs of 3
MARGIN_PCT = 10.0
MAX_ENUMERATE = 20_000   # candidates; above, Optuna explores (report/search_optuna.py)
QUEUES = (1, 2, 4)
SEARCH_VERSION = 1


@dataclass
class SearchResult:
    budgets: list[tuple[str, int]]
    rows: list[dict]                     # a row per candidate and budget (candidates.csv)
    best: dict[str, dict | None]         # budget label -> best row that fits (None: nothing fits)
    best_fixed: dict[str, dict | None]   # budget label -> best fixed-policy row that fits
    pareto: list[dict]
    files: list[Path] = field(default_factory=list)
    resumed: int = 0
    margin_pct: float = MARGIN_PCT
    sampler: str = "grid"           # grid: every candidate; optuna: the trials NSGA-II chose
    device_mismatch: str | None = None   # the profile is another device's (allowed): every output says so

    def minimum_bytes(self) -> int | None:
        """The least RAM any candidate needs to fit (the top of its peak's range; what the
        smallest budget needs, before the margin)."""
        done = [r["charged_peak_high_bytes"] for r in self.rows if r["completed"]]
        return min(done) if done else None


def parse_budgets(texts: list[str]) -> list[tuple[str, int]]:
    """`--ram` values -> (label as given, bytes); a label is a file-name part (best-<label>.yaml)."""
    from ..run.limit import parse_size
    out = []
    for t in texts:
        n = parse_size(t, None, option="--ram")
        label = re.sub(r"[^A-Za-z0-9.]+", "_", t.strip())
        if label in {lbl for lbl, _ in out}:
            raise ConfigError(f"--ram {t!r}: given twice")
        out.append((label, n))
    if not out:
        raise ConfigError("--ram: give at least one budget (e.g. --ram 4GB)")
    return out


def thread_options(cores: int) -> list[int]:
    """One thread, half the cores, all of them."""
    return sorted({1, max(1, cores // 2), cores})


def clip_lanes(sc: Scenario) -> list[str]:
    pipe = scenario_pipeline(sc)
    return list(dict.fromkeys(s.lane or s.module or "main" for s in pipe.stages if s.per_clip))


def parallel_threads(sc: Scenario) -> list[dict]:
    """Threads of each per-clip lane (at most the device's cores together); request stages run
    alone, on `main` with every core."""
    cores, lanes = sc.device.cores, clip_lanes(sc)
    out = []
    for combo in itertools.product(thread_options(cores), repeat=len(lanes)):
        if sum(combo) <= cores:
            out.append({"threads.main": cores, **{f"threads.{lane}": t for lane, t in zip(lanes, combo)}})
    return out


def space(sc: Scenario, policies=None) -> list[dict]:
    """Every candidate (of `policies`, default all): a mapping of scenario fields -> values."""
    from ..errors import valid_names
    for p in policies or ():
        if p not in FIXED_POLICIES + BUDGET_POLICIES:
            raise ConfigError("--policies: " + valid_names("policy", p, FIXED_POLICIES + BUDGET_POLICIES))
    pipe = scenario_pipeline(sc)
    serial = [{"threads.main": t} for t in thread_options(sc.device.cores)]
    parallel = [{**th, "workload.queue_size": q} for th in parallel_threads(sc) for q in QUEUES]
    out = []
    for variant in ["none", *pipe.variants]:
        modules = pipe.with_variant(None if variant == "none" else variant).used_modules()
        for policy in FIXED_POLICIES:
            for s in (parallel if policy == "reuse-parallel" else serial):
                out.append({"policy": policy, "variant": variant, **s})
        for policy in BUDGET_POLICIES:   # the optimum needs no marks: it weighs every resident set
            for marks in itertools.product(MARKS if policy != "budget-optimal" else ("rule",), repeat=len(modules)):
                chosen = {m: k for m, k in zip(modules, marks) if k != "rule"}
                for lanes, settings in (("serial", serial), ("parallel", parallel)):
                    for s in settings:
                        out.append({"policy": policy, "variant": variant, "schedule.lanes": lanes,
                                    "schedule.modules": chosen, **s})
    out = [c for c in out if not policies or c["policy"] in policies]
    if not out:
        raise ConfigError(f"scenario {sc.name!r}: the search space is empty")
    return out


def marks_text(marks: dict) -> str:
    """`schedule.modules` as text: "decoder=keep sentence-encoder=reload" ("" for none)."""
    return " ".join(f"{m}={mark}" for m, mark in sorted(marks.items()))


def describe(changes: dict) -> dict:
    """A candidate's settings as flat table cells."""
    return {k: (marks_text(v) or "all=rule") if k == "schedule.modules" else v for k, v in changes.items()}


# ---- running the candidates
def plan_ram(budget: int, margin_pct: float) -> int:
    """The RAM a schedule is planned and simulated in for a budget: the budget less the margin."""
    return int(budget * (1 - margin_pct / 100))


@dataclass
class Context:
    """What both explorations need: the scenario as a mapping, its candidates, the profile."""
    scenario_path: str
    base: dict
    cands: list[dict]
    profile: str
    uncharged: int

    def study(self, points: list[dict]):
        from .study import CHANGES, study_from_mapping
        return study_from_mapping({"name": f"search-{self.base['name']}", "base": self.base, "grid": {CHANGES: points},
                                   "profile": self.profile}, self.scenario_path, Path(self.scenario_path).parent)


def run_search(scenario_path: str | Path, budgets: list[tuple[str, int]], out_dir: str | Path, *,
               profile: str | None = None, workers: int = 1, dask: str | None = None,
               progress: bool = False, policies=None, processes: bool = True,
               margin_pct: float = MARGIN_PCT, sampler: str = "auto", trials: int = 2000,
               allow_device_mismatch: bool = False) -> SearchResult:
    """Simulate every candidate at every budget less `margin_pct` (resumable; with more than
    MAX_ENUMERATE candidates, or `sampler="optuna"`, Optuna's NSGA-II explores `trials` of them
    per budget instead), then write the tables, the best scenario per budget and the picture."""
    if not 0 <= margin_pct < 100:
        raise ConfigError(f"--margin: a percentage from 0 to under 100, got {margin_pct}")
    if sampler not in ("auto", "grid", "optuna"):
        raise ConfigError(f"--sampler {sampler!r}: one of auto, grid, optuna")
    from ..io import check_writable_dir
    from ..schema.profile import load_profile
    from ..sim.engine import uncharged_baseline
    out = check_writable_dir(out_dir)
    sc = load_scenario(scenario_path)
    prof = profile or sc.profile
    if not prof:
        raise ConfigError(f"{scenario_path}: field 'profile': missing (give --profile FILE)")
    prof = str(Path(prof).resolve())
    base = sc.model_dump()
    for lane in clip_lanes(sc):   # every lane's threads a field of the base, so that a point may set it
        base["threads"].setdefault(lane, 1)
    from ..schema.device_match import check_device
    profile_obj = load_profile(prof)
    mismatch = check_device(profile_obj, sc.device, allow_device_mismatch, prof, scenario_path)
    ctx = Context(str(scenario_path), base, space(sc, policies), prof, uncharged_baseline(profile_obj))
    use_optuna = sampler == "optuna" or (sampler == "auto" and len(ctx.cands) > MAX_ENUMERATE)
    if use_optuna:
        from .search_optuna import explore
        rows, resumed = explore(ctx, budgets, margin_pct, trials, workers=workers, dask=dask, processes=processes), 0
    else:
        rows, resumed = enumerate_all(ctx, budgets, margin_pct, out, workers, dask, progress, processes)
    result = summarize(rows, budgets)
    result.margin_pct, result.resumed, result.device_mismatch = margin_pct, resumed, mismatch
    result.sampler = "optuna" if use_optuna else "grid"
    from .search_out import write_outputs
    result.files = write_outputs(result, sc, base, out)
    return result


def enumerate_all(ctx: Context, budgets, margin_pct, out: Path, workers, dask, progress, processes):
    """Every candidate at every budget, through the sweep (resumable: DIR/points/)."""
    from .sweep import run_sweep
    points = [{**c, "device.ram_bytes": plan_ram(n, margin_pct)} for c in ctx.cands for _, n in budgets]
    res = run_sweep(ctx.study(points), out / "points", workers=workers, dask=dask, progress=progress, plots=False,
                    processes=processes)
    rows = [candidate_row(r, i // len(budgets), points[i], ctx.uncharged, budgets[i % len(budgets)][1])
            for i, r in enumerate(res.rows)]
    return rows, res.resumed


def candidate_row(point: dict, schedule: int, changes: dict, uncharged: int, budget: int) -> dict:
    """A table row; `ram_bytes`: its budget; `plan_ram_bytes`: the RAM it was planned and
    simulated in (the budget less the margin); `charged_peak_bytes`: the peak as the RAM limit
    counts it (the simulator's out-of-memory rule: process memory less the runtime's
    shared-library pages), `charged_peak_high_bytes` the top of its range so counted. It fits
    when it completed in `plan_ram_bytes` and the top of its range is within it."""
    row = {"schedule": schedule, **describe({k: v for k, v in changes.items() if k != "device.ram_bytes"}),
           **{k: v for k, v in point.items() if k not in ("index", "changes")}}
    row["changes"] = changes
    row["ram_bytes"], row["plan_ram_bytes"] = budget, changes["device.ram_bytes"]
    done = not row["error"] and not row["oom"] and row["peak_bytes"] is not None
    high = row.get("peak_high_bytes") or row["peak_bytes"]   # sweeps written before it: the peak
    row["charged_peak_bytes"] = None if row["peak_bytes"] is None else row["peak_bytes"] - uncharged
    row["charged_peak_high_bytes"] = None if high is None else high - uncharged
    row["completed"] = bool(done)
    row["fits"] = bool(done) and row["charged_peak_high_bytes"] <= row["plan_ram_bytes"]
    return row


def summarize(rows: list[dict], budgets: list[tuple[str, int]]) -> SearchResult:
    best, best_fixed = {}, {}
    for label, n in budgets:
        fit = [r for r in rows if r["ram_bytes"] == n and r["fits"]]
        best[label] = min(fit, key=rank, default=None)
        best_fixed[label] = min((r for r in fit if r["policy"] in FIXED_POLICIES), key=rank, default=None)
    return SearchResult(budgets, rows, best, best_fixed, pareto_front([r for r in rows if r["fits"]]))


def rank(r: dict) -> tuple:
    """Fastest first; then the least RAM it needs (the top of its range); then the first listed
    (deterministic)."""
    return r["e2e_s"], r["charged_peak_high_bytes"], r["schedule"], r["ram_bytes"]


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows not beaten on both e2e and the RAM they need (one per distinct point), fastest first."""
    front, least = [], None
    for r in sorted(rows, key=rank):
        if least is None or r["charged_peak_high_bytes"] < least:
            front.append(r)
            least = r["charged_peak_high_bytes"]
    return front
