"""Run each scenario for real, simulate the same plan with the profile, compare, write the report.

The runner and the simulator execute the same plan: the simulator is given the number of clips
the runner really cut from the videos. Weight files are evicted from the page cache before each
real run (where the OS allows) so that both start cold, as a phone app does after a restart.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text, check_writable_dir
from ..procfs import huge_pages
from ..schema.profile import Profile
from ..schema.scenario import Scenario
from .compare import compare_runs, reductions, summarize_errors
from .markdown import fidelity_markdown


def group_key(scenario: Scenario) -> str:
    """Scenarios equal in everything but name, policy and threads form one group (reload vs reuse)."""
    data = scenario.model_dump(mode="json")
    for key in ("name", "policy", "threads"):
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def evict_weights(scenario: Scenario, store) -> bool:
    """Drop the scenario's weight files from the page cache; True if the OS accepted it."""
    try:
        from ..models import sources
        from ..pagecache import evict
        from ..plan import POLICY_BUILDERS, make_plan
    except ImportError:
        return False
    files: set[str] = set()
    for policy in POLICY_BUILDERS:   # every module any policy loads (the variants' too)
        plan = make_plan(scenario, policy, clips=1)
        for name, ref in plan.instances.items():
            try:
                files.update(str(f) for f in sources.weight_files(plan.pipeline, name, ref, scenario.models.preset, store))
            except Exception:   # noqa: BLE001 - a module not built: nothing of it to evict
                continue
    return evict(sorted(files))


def machine_info() -> dict:
    info = {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.lower().startswith(("model name", "hardware")):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info["huge_pages"] = huge_pages()
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def huge_pages_warnings(profile: Profile, summaries: list[dict]) -> list[str]:
    """A warning when the profile was measured with huge pages for torch's buffers on and the real
    runs off, or the other way round: it changes op latencies (atomsim/process.py)."""
    runs = {(s.get("huge_pages") or {}).get("in_use") for s in summaries}
    prof = (profile.device.get("huge_pages") or {}).get("in_use")
    if runs == {prof}:
        return []
    return [f"huge pages for torch buffers: profile {prof}, real runs {sorted(runs, key=str)} (they change op "
            "latencies: measure both with the same THP_MEM_ALLOC_ENABLE)"]


def median_run(runs: list[tuple]) -> tuple:
    """Of repeated real runs [(trace, summary)], the one with the median end-to-end time (the lower
    middle one for an even count), its summary's peak replaced by the median peak of all runs and
    every run's figures kept under `repeats`."""
    import statistics
    order = sorted(range(len(runs)), key=lambda i: runs[i][1]["e2e_s"])
    trace, summary = runs[order[(len(runs) - 1) // 2]]
    summary = dict(summary)
    if len(runs) > 1:
        summary["peak_bytes"] = int(statistics.median_low([r[1]["peak_bytes"] for r in runs]))
        summary["repeats"] = [{"e2e_s": r[1]["e2e_s"], "peak_bytes": r[1]["peak_bytes"]} for r in runs]
    return trace, summary


def real_runs(scenario: Scenario, videos: list[str], out_dir: Path, store=None, cold: bool = True,
              tag: str = "measured", ram_limit: str | None = None) -> tuple:
    """One real run into out_dir/tag, its weights evicted first when `cold`: (trace, summary, evicted)."""
    evicted = evict_weights(scenario, store) if cold else False
    trace, summary = run_fresh(scenario, videos, out_dir, store, tag=tag, ram_limit=ram_limit)
    return trace, summary, evicted


def compare_one(scenario: Scenario, profile: Profile, runs: list[tuple], out_dir: Path, evicted: bool):
    """Simulate the plan of the real runs (same clip count) and compare with their median run."""
    from ..sim import simulate, write_result
    from ..sim.cli import draw_timeline
    mtrace, msummary = median_run(runs)
    clips = msummary.get("clips") or len({s.clip for s in mtrace.spans if s.op == "decode"})
    if msummary.get("ram_limit_bytes"):   # the simulated device has the RAM the real run was limited to
        scenario = scenario.with_changes(**{"device.ram_bytes": msummary["ram_limit_bytes"]})
    sim = simulate(scenario, profile, clips=clips)
    draw_timeline(sim, write_result(sim, out_dir / "simulated"))
    row = compare_runs(scenario.name, msummary, sim.summary)
    row["clips"] = clips
    row["quant"] = scenario.models.quant
    row["threads"] = scenario.threads.model_dump()
    row["evicted_before_run"] = evicted
    row["skipped_videos"] = msummary.get("skipped", 0)
    if "repeats" in msummary:
        row["measured_repeats"] = msummary["repeats"]
    if msummary.get("ram_limit_bytes"):
        row.update(ram_limit_bytes=msummary["ram_limit_bytes"], measured_outcome=msummary["outcome"],
                   simulated_outcome="completed" if sim.summary["completed"] else "oom-killed",
                   cgroup_peak_bytes=msummary.get("cgroup_peak_bytes"))
    return row, mtrace, sim.trace


def validate_one(scenario: Scenario, profile: Profile, videos: list[str], out_dir: Path, store=None,
                 cold: bool = True) -> tuple[dict, object, object]:
    """Run and simulate one scenario; write both traces and the side-by-side picture."""
    mtrace, msummary, evicted = real_runs(scenario, videos, out_dir, store, cold)
    return compare_one(scenario, profile, [(mtrace, msummary)], out_dir, evicted)


def run_fresh(scenario: Scenario, videos: list[str], out_dir: Path, store=None, tag: str = "measured",
              ram_limit: str | None = None):
    """The real run, in a fresh process (`atomsim run`), as an app starts: nothing left over in
    the heap or the allocator from earlier runs, the runtime baseline as the profile measured it."""
    import subprocess
    import sys

    from ..errors import EXIT_OOM, AtomsimError
    from ..process import measurement_env
    from ..schema.scenario import dump_scenario
    from ..schema.trace import read_trace

    path = out_dir / "scenario.yaml"
    atomic_write_text(path, dump_scenario(scenario))
    cmd = [sys.executable, "-m", "atomsim", "run", str(path), "--videos", *map(str, videos),
           "--out", str(out_dir / tag), "--no-progress"]
    if store:
        cmd += ["--store", str(store)]
    if ram_limit:
        cmd += ["--ram-limit", str(ram_limit)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=measurement_env())   # pinned from its start
    if proc.returncode not in ((0, EXIT_OOM) if ram_limit else (0,)):
        raise AtomsimError(f"real run of scenario {scenario.name!r} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    atomic_write_text(out_dir / f"{tag}.log", proc.stdout + proc.stderr)
    return read_trace(out_dir / tag)


def profile_request(scenarios: list[Scenario], samples: int = 5) -> dict:
    """What a profile must hold to simulate `scenarios`, as arguments of `profile.measure`: their
    preset, every backend they use, every thread count they set, all modules, and a co-run of the
    encoder with the caption decoder for each backend and thread setting that a reuse-parallel
    scenario overlaps."""
    from ..errors import ConfigError
    presets = sorted({sc.models.preset for sc in scenarios})
    if len(presets) != 1:
        raise ConfigError(f"one profile covers one preset; the scenarios use {', '.join(presets)}")
    quants, threads, pairs = [], set(), []
    for sc in scenarios:
        for q in [sc.models.quant, *sc.models.quant_by_model.values()]:
            if q not in quants:
                quants.append(q)
        threads |= {int(t) for t in sc.threads.model_dump().values()}
        q = sc.models.quant_of("video-encoder")
        pair = [q, "decoder", int(sc.threads.encoder), int(sc.threads.decoder)]
        if sc.policy == "reuse-parallel" and sc.models.quant_of("decoder") == q and pair not in pairs:
            pairs.append(pair)   # the encoder and the caption decoder overlap, at these threads
    request = {"preset": presets[0], "quants": quants, "threads": sorted(threads), "samples": int(samples),
               "corun_pairs": pairs}
    own = [sc for sc in scenarios if sc.pipeline]
    if own:
        return {**request, **pipeline_request(own, len(own) == len(scenarios))}
    return request


def pipeline_request(scenarios: list[Scenario], alone: bool) -> dict:
    """A profile of the modules of one pipeline of one's own (`profile.measure(pipeline=...)`),
    with the co-run of its first two lanes at the threads the scenarios give them."""
    from ..errors import ConfigError
    from ..schema.pipeline import scenario_pipeline
    pipes = {scenario_pipeline(sc).name: scenario_pipeline(sc) for sc in scenarios}
    if len(pipes) != 1 or not alone:
        raise ConfigError("one profile measured here covers one pipeline of one's own; the scenarios use "
                          f"{', '.join(sorted(pipes))}{'' if alone else ' and bundled ones'}: validate them apart")
    pipe = next(iter(pipes.values()))
    lanes = [s.lane or s.module for s in pipe.stages if s.per_clip and s.module][:2]
    threads = tuple(scenarios[0].threads.of(lane) for lane in lanes) if len(lanes) == 2 else (1, 1)
    return {"pipeline": pipe, "corun_pairs": None, "corun_threads": threads}


def validate_suite(scenarios: list[Scenario], profile: Profile | None, videos: list[str], out_dir, store=None,
                   profile_path: str | None = None, progress: bool = True, repeat: int = 1,
                   measure_profile: dict | None = None, ram_limit: str | None = None,
                   device_mismatch: list[str] | None = None) -> dict:
    """Validate every scenario; with `repeat` > 1 each scenario runs that many times, in
    interleaved rounds (all scenarios once, then again), so that a drift of the machine's speed
    spreads over all of them; each is compared through its median run.

    `measure_profile` (arguments of `profile.measure`, with `out`): measure the profile now, its
    rounds put between the rounds of real runs (before real round k, profile rounds up to
    ceil((k + 1) * samples / repeat)), so that the profile and the runs see the same states of a
    machine whose speed drifts; `profile` is then None and the measured one is used.

    `ram_limit` (a size, or `device`): every real run under that RAM limit (`atomsim run
    --ram-limit`), simulated on a device with that RAM; the rows add both outcomes.
    `device_mismatch`: the notes of a profile allowed for another device (`--allow-device-mismatch`),
    kept in fidelity.json (`device_mismatch`) and as warnings."""
    out_dir = check_writable_dir(out_dir)
    from ..errors import ConfigError
    from ..plan import make_plan
    from ..sim.engine import check_profile
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    if (profile is None) == (measure_profile is None):
        raise ConfigError("give either a profile or measure_profile")

    def check(profile):   # a profile that lacks a module or op fails before (more) real runs
        for sc in scenarios:
            check_profile(profile, make_plan(sc))

    if profile is not None:
        check(profile)
    rows, groups = [], {}
    runs = {sc.name: [] for sc in scenarios}
    evicted = {}
    from tqdm import tqdm
    bar = tqdm(total=len(scenarios) * repeat, desc="validate", unit="run", disable=not progress)
    for k in range(repeat):
        if measure_profile is not None and profile is None:
            from ..profile.measure import measure
            upto = -(-(k + 1) * int(measure_profile["samples"]) // repeat)   # ceil; the last round: all
            profile = measure(**measure_profile, rounds_now=upto,
                              progress=lambda d, t, desc: bar.set_postfix_str(f"profile: {desc}"))
            if profile is not None:
                check(profile)
        for sc in scenarios:
            bar.set_postfix_str(f"{sc.name} ({k + 1}/{repeat})")
            trace, summary, ev = real_runs(sc, videos, out_dir / sc.name, store,
                                           tag="measured" if repeat == 1 else f"measured-{k + 1}", ram_limit=ram_limit)
            runs[sc.name].append((trace, summary))
            evicted[sc.name] = evicted.get(sc.name, True) and ev
            bar.update(1)
    bar.close()
    for sc in scenarios:
        row, mtrace, strace = compare_one(sc, profile, runs[sc.name], out_dir / sc.name, evicted[sc.name])
        rows.append(row)
        groups[sc.name] = group_key(sc)
        try:
            from ..report.timeline import plot_timeline
            plot_timeline([mtrace, strace], out_dir / f"{sc.name}.png",
                          titles=[f"{sc.name}: measured" + (f" (median of {repeat})" if repeat > 1 else ""),
                                  f"{sc.name}: simulated"])
        except ImportError:
            pass
    reds = reductions(rows, groups)
    warnings = huge_pages_warnings(profile, [s for rs in runs.values() for _, s in rs])
    warnings += [f"device mismatch allowed (--allow-device-mismatch): {m}" for m in device_mismatch or ()]
    from ..schema.device_match import describe_profile
    result = {
        "version": 1, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "repeat": repeat,
        "machine": machine_info(), "profile": profile_path, "profile_source": profile.source,
        "profile_is": describe_profile(profile), "device_mismatch": list(device_mismatch or ()),
        "profile_interleaved": measure_profile is not None,
        "scenarios": rows, "reductions": reds, "summary": summarize_errors(rows, reds), "warnings": warnings,
    }
    atomic_write_json(out_dir / "fidelity.json", result)
    atomic_write_text(out_dir / "fidelity.md", fidelity_markdown(result))
    return result
