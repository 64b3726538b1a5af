"""Energy estimate from a device power model (the paper's appendix F.7).

The paper estimates a pipeline's energy as ``(P_cpu + P_dram) × T``: the CPU draws ~2.0 W while
it runs inference ("moderate computational load"), LPDDR DRAM ~0.2 W while the app is active.
atomsim keeps the two terms apart so that idle gaps are not charged CPU power:

    energy_j = cpu_w × cpu_busy_s + dram_w × e2e_s

``cpu_busy_s`` (the exact rule, ``rule="union"``, the default): the wall time during which at least
one ``run`` or ``load`` step executes, i.e. the length of the union of those spans' intervals
(``free`` steps are not counted). ``cpu_w`` is the device's whole-CPU power under inference load,
so two lanes running at once still draw ``cpu_w`` (the CPU is "busy"; the paper's figure is not per
core). With ``rule="lanes"`` every span counts on its own (the sum of run and load durations,
overlap counted twice), an upper bound for concurrent lanes.

When the pipeline is busy throughout (no gaps, as in the paper's serial baseline) this is exactly
the paper's ``(P_cpu + P_dram) × T``. From a summary alone (no trace), ``cpu_busy_s`` is the
summary's own ``cpu_busy_s`` if present, else ``e2e_s`` (a summary does not know the gaps).
Device power figures come from the catalog (``cpu_w``, ``dram_w``; atomsim/data/devices.yaml).
Model arithmetic beside the summary (stdlib only), so the simulator and the runner add it without
importing the report layer.

    from atomsim.schema.energy import add_energy
    summary = add_energy(summary, trace, scenario.device)   # adds energy_j, cpu_busy_s, ...
"""
from __future__ import annotations

RULES = ("union", "lanes")


def _power(device) -> tuple[float, float]:
    if isinstance(device, dict):
        return float(device.get("cpu_w", 2.0)), float(device.get("dram_w", 0.2))
    return float(device.cpu_w), float(device.dram_w)


def cpu_busy_s(trace, rule: str = "union") -> float:
    """CPU busy seconds of a trace under `rule` (see the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown energy rule {rule!r}; valid: {', '.join(RULES)}")
    spans = sorted((s.start_s, s.end_s) for s in trace.spans if s.kind in ("run", "load") and s.end_s > s.start_s)
    if rule == "lanes":
        return float(sum(e - s for s, e in spans))
    busy, cur_s, cur_e = 0.0, None, None
    for s, e in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    return float(busy)


def energy_parts(summary_or_trace, device, rule: str = "union") -> dict:
    """{energy_j, energy_cpu_j, energy_dram_j, cpu_busy_s} of a trace or a summary dict on `device`."""
    cpu_w, dram_w = _power(device)
    if isinstance(summary_or_trace, dict):
        e2e = float(summary_or_trace.get("e2e_s") or 0.0)
        busy = float(summary_or_trace.get("cpu_busy_s", e2e) or 0.0)
    else:
        e2e = float(summary_or_trace.e2e_s)
        busy = cpu_busy_s(summary_or_trace, rule)
    cpu_j, dram_j = cpu_w * busy, dram_w * e2e
    return {"energy_j": cpu_j + dram_j, "energy_cpu_j": cpu_j, "energy_dram_j": dram_j, "cpu_busy_s": busy}


def energy_j(summary_or_trace, device, rule: str = "union") -> float:
    """Joules of one pipeline run: cpu_w × cpu_busy_s + dram_w × e2e_s (appendix F.7)."""
    return energy_parts(summary_or_trace, device, rule)["energy_j"]


def add_energy(summary: dict, trace=None, device=None, rule: str = "union") -> dict:
    """`summary` with energy_j, energy_cpu_j, energy_dram_j, cpu_busy_s and the power model added
    (a new dict; the input is not changed). Uses the trace when given, else the summary alone.
    `device`: a schema Device or a mapping with cpu_w/dram_w (default: the paper's 2.0 W / 0.2 W)."""
    device = device if device is not None else {"cpu_w": 2.0, "dram_w": 0.2}
    cpu_w, dram_w = _power(device)
    parts = energy_parts(trace if trace is not None else summary, device, rule)
    out = dict(summary)
    out.update(parts)
    out["power_model"] = {"cpu_w": cpu_w, "dram_w": dram_w, "rule": rule, "source": "paper appendix F.7"}
    return out
