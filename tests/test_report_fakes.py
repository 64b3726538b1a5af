"""Helpers for the report/sweep tests (no tests here): a synthetic profile and a fake simulator."""
from __future__ import annotations

from types import SimpleNamespace

GB = 1e9
MODS = {  # model: (resident bytes, ops {op: (latency_s at 1 thread, activation bytes, input bytes)})
    "video-encoder": (0.4 * GB, {"encode": (0.8, 0.2 * GB, 4e6)}),
    "decoder": (1.3 * GB, {"caption": (1.5, 0.15 * GB, 1e5), "generate": (3.0, 0.2 * GB, 1e5)}),
    "bert-decoder": (0.3 * GB, {"caption": (0.9, 0.1 * GB, 1e5)}),
    "sentence-encoder": (0.09 * GB, {"embed": (0.02, 0.01 * GB, 1e4)}),
}


def stat(x):
    return {"samples": [x], "warmups": [], "n": 1, "median": x, "mean": x, "p10": x, "p90": x, "stdev": 0.0, "mad": 0.0}


def profile_dict(quants=("torchao-int8",), preset="paper", device="pixel_5a", models=tuple(MODS), scale=1.0,
                 source="published"):
    mods = {}
    for qi, q in enumerate(quants):
        for m in models:
            res, ops = MODS[m]
            res = int(res * (1 + 0.5 * qi))
            mods[f"{m}/{q}"] = {
                "model": m, "quant": q, "preset": preset, "params": int(res / 2), "file_bytes": res,
                "resident_bytes": res,
                "load": {"cold_s": stat(res / 8e8 * scale), "warm_s": stat(res / 4e9 * scale), "transient_bytes": [0, int(res * 0.3)]},
                "ops": {op: {"latency_s": {"1": stat(t * scale), "2": stat(t * scale * 0.6)}, "activation_peak_bytes": int(a),
                             "input_bytes": int(i), "items": 1, "shape": {"tokens": 23} if op == "caption" else {}}
                        for op, (t, a, i) in ops.items()},
            }
    return {"version": 1, "source": source, "preset": preset, "device": {"name": device, "cores": 8},
            "baseline_rss_bytes": int(0.3 * GB), "pipeline_ops_s": {"rank": 0.01, "assemble": 0.5}, "storage_read_bytes_per_s": 8e8, "modules": mods}


def write_profile(path, **kw):
    import json
    path.write_text(json.dumps(profile_dict(**kw)))
    return path


class Sp:
    def __init__(self, s, e, kind="run"):
        self.start_s, self.end_s, self.kind = s, e, kind


def simulate(scenario, profile, policy=None, clips=None):
    """Fake simulator: analytic, deterministic; reload slower than reuse."""
    n = scenario.workload.clip_count()
    pol = policy or scenario.policy
    per = {"reload": 3.0, "reuse-serial": 2.5, "reuse-parallel": 2.0}.get(pol, 2.2)
    e2e = 1.0 + per * n
    w = sum(m.resident_bytes for m in profile.modules.values()) / len(profile.modules) * 3
    b = {"weights": int(w), "inputs": 1000 * n, "activations": 10 ** 8, "load_temporaries": 0, "baseline": 3 * 10 ** 8}
    peak = sum(b.values())
    summary = {"e2e_s": e2e, "lower_bound_s": e2e * 0.9, "peak_bytes": peak, "breakdown_bytes": b,
               "oom": peak > scenario.device.ram_bytes, "policy": pol}
    trace = SimpleNamespace(spans=[Sp(0, e2e * 0.5), Sp(e2e * 0.4, e2e)], e2e_s=e2e)
    return SimpleNamespace(summary=summary, trace=trace)


def slow_simulate(scenario, profile, policy=None, clips=None):
    import time
    time.sleep(0.001)
    return simulate(scenario, profile, policy, clips)


CALLS: list = []
INTERRUPT_AT = None


def counting_simulate(scenario, profile, policy=None, clips=None):
    """Fake simulator that records its calls and raises KeyboardInterrupt at clips == INTERRUPT_AT."""
    if INTERRUPT_AT is not None and scenario.workload.clips == INTERRUPT_AT:
        raise KeyboardInterrupt
    CALLS.append(scenario.workload.clips)
    return simulate(scenario, profile, policy, clips)
