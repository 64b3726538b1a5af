"""The simulator: execute a policy's plan against a profile on a device model (SimPy). Never torch.

    from atomsim.sim import simulate, write_result
    res = simulate(scenario, profile, policy="reuse-parallel")
    res.summary["e2e_s"], res.summary["lower_bound_s"], res.trace, res.plan, res.events
    write_result(res, "out/reuse-parallel")      # trace.json, summary.json (timeline.png: the CLI's
                                                 # sim.cli.draw_timeline, atomsim.report's matplotlib)

Modules: `cpu.py` (processor sharing of cores and storage bandwidth), `memory.py` (RAM by
category, page cache), `engine.py` (executes a plan; the modelling rules), `bound.py` (lower
bound), `cli.py` (`atomsim simulate`, `atomsim demo`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..plan import make_plan
from ..schema.plan import Plan
from ..schema.profile import Profile, load_profile
from ..schema.scenario import Scenario
from ..schema.trace import Trace, summary_dict, write_trace
from .bound import lower_bound
from .engine import Engine

__all__ = ["simulate", "SimResult", "write_result", "lower_bound"]


@dataclass
class SimResult:
    plan: Plan
    trace: Trace
    summary: dict            # summary_dict(...) keys; other parts may add keys (e.g. energy_j)
    events: int              # SimPy events processed
    loads: list = field(default_factory=list)   # per load: step, module, t_s, warm


def simulate(scenario: Scenario, profile: Profile | None = None, policy: str | None = None,
             clips: int | None = None) -> SimResult:
    """Simulate `scenario` under `policy` (default: the scenario's). Deterministic."""
    if profile is None:
        if not scenario.profile:
            raise ConfigError(f"scenario {scenario.name!r}: field 'profile': missing (give a profile file)")
        profile = load_profile(scenario.profile)
    plan = make_plan(scenario, policy, clips, profile=profile)
    warm = scenario.page_cache == "warm"
    meta = {"scenario": scenario.name, "device": scenario.device.name, "profile_source": profile.source,
            "ram_bytes": scenario.device.ram_bytes}
    eng = Engine(plan, profile, scenario.device, warm_start=warm, trace_meta=meta).run()
    bound = lower_bound(plan, profile, scenario.device, warm_start=warm)
    loads = [{**ld, "t_s": round(ld["t_s"], 9)} for ld in eng.loads]
    extra = {
        "device": scenario.device.name, "cores": scenario.device.cores, "ram_bytes": scenario.device.ram_bytes,
        "clips": plan.clips, "profile_source": profile.source, "page_cache_start": scenario.page_cache,
        "loads": loads, "cold_loads": sum(1 for ld in loads if not ld["warm"]),
        "warm_loads": sum(1 for ld in loads if ld["warm"]), "page_cache_evictions": eng.mem.cache.evictions,
        "events": eng.env.processed, "completed": eng.oom_event is None,
        "peak_high_bytes": eng.mem.peak_high,   # the top of the peak's range (engine.py)
    }
    evictions = plan.evictions()
    if evictions:   # budget policies: which module was freed for what (fixed policies have none)
        extra["evictions"] = evictions
    summary = summary_dict(eng.trace, scenario=scenario.name, lower_bound_s=bound,
                           oom=eng.oom_event is not None, oom_event=eng.oom_event, extra=extra)
    from ..schema.energy import add_energy   # pure arithmetic (the device's power model), no torch
    summary = add_energy(summary, eng.trace, scenario.device, threads={s.id: s.threads for s in plan.steps})
    return SimResult(plan=plan, trace=eng.trace, summary=summary, events=eng.env.processed, loads=loads)


def write_result(res: SimResult, out_dir) -> Path:
    """Write `trace.json` and `summary.json` into `out_dir` (no picture: the simulator imports
    nothing of atomsim.report; `atomsim simulate` draws timeline.png with sim.cli.draw_timeline)."""
    out_dir = Path(out_dir)
    write_trace(out_dir, res.trace, res.summary)
    return out_dir
