"""A lower bound on any execution of a plan's work on a device's cores.

bound = max(critical path, CPU core-seconds / cores), where
- the critical path runs through deps and lane order (a lane runs its steps one at a time), each
  step at its fastest: ops at their latency with all the device's cores (flat above the largest
  profiled thread count), times the smallest co-run factor they could get (< 1 only if a profile
  records a co-run speed-up); loads warm unless the file cannot be in the page cache yet (the
  first load of a module when the run starts cold: storage read alone + warm CPU work);
  frees their `free_s` (one thread);
- core-seconds sum, per op, the least threads x latency it could take (and one thread for a
  load's warm CPU work).
The simulated end-to-end time is never below it (a test checks).
"""
from __future__ import annotations

from ..schema.plan import Plan
from ..schema.profile import Profile
from ..schema.scenario import Device
from .engine import same_storage, step_curves


def lower_bound(plan: Plan, profile: Profile, device: Device, warm_start: bool = False) -> float:
    cores = device.cores
    fastest: dict[str, float] = {}
    core_s = 0.0
    seen_modules: set[str] = set()
    same = same_storage(profile, device)
    curves = step_curves(profile, plan)
    for s in plan.steps:
        if s.kind == "run":
            curve, key = curves[s.id]
            factor = 1.0
            if key is not None:
                for c in profile.corun:
                    for k, slow in ((c.a, c.slowdown_a), (c.b, c.slowdown_b)):
                        if k == key:
                            factor = min(factor, slow)
            fastest[s.id] = curve.fastest(cores) * factor
            core_s += curve.min_core_seconds(cores) * factor
        elif s.kind == "load":
            ref = plan.instances[s.instance]
            m = profile.modules[ref.key]
            warm_s = m.load.warm_s.median
            t = warm_s
            if not warm_start and ref.key not in seen_modules:
                read = max(m.load.cold_s.median - warm_s, 0.0) if same else m.file_bytes / device.storage_read_bytes_per_s
                t += read
            seen_modules.add(ref.key)
            fastest[s.id] = t
            core_s += warm_s
        elif s.kind == "wait":
            fastest[s.id] = float(s.args.get("seconds", 0.0))
        else:
            m = profile.modules[plan.instances[s.instance].key] if s.instance else None
            free_s = m.free_s.median if m is not None and m.free_s is not None else 0.0
            fastest[s.id] = free_s
            core_s += free_s
    finish: dict[str, float] = {}
    lane_last: dict[str, float] = {}
    for s in plan.steps:   # plan order is a topological order (deps come earlier)
        start = max([finish[d] for d in s.deps] + [lane_last.get(s.lane, 0.0)])
        finish[s.id] = start + fastest[s.id]
        lane_last[s.lane] = finish[s.id]
    critical = max(finish.values(), default=0.0)
    return max(critical, core_s / cores)
