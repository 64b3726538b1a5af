"""Energy estimate from a device power model: the paper's appendix F.7 for its phones, a stated
assumption elsewhere (the catalog's `power_source` says which; atomsim/data/devices.yaml).

The paper estimates a pipeline's energy as ``(P_cpu + P_dram) × T``: the CPU draws ~2.0 W while
it runs inference ("moderate computational load"), LPDDR DRAM ~0.2 W while the app is active.
atomsim keeps the two terms apart so that idle gaps are not charged CPU power:

    energy_j = cpu_w × cpu_busy_s + dram_w × e2e_s

The rule that makes ``cpu_busy_s`` is the device's ``energy_rule`` (or the `rule` argument):

- ``union`` (F.7's rule, the default): the wall time during which at least one ``run`` or ``load``
  step executes, i.e. the length of the union of those spans' intervals (``free`` steps are not
  counted). ``cpu_w`` is the device's whole-CPU power under inference load, so two lanes running at
  once still draw ``cpu_w``: overlapping lanes are free. When the pipeline is busy throughout (no
  gaps, as in the paper's serial baseline) this is exactly the paper's ``(P_cpu + P_dram) × T``.
- ``per-core``: power per busy core. At each instant the busy cores are the threads of the run and
  load steps executing, at most the device's cores; ``energy_cpu_j = core_w × core_busy_s`` (the
  integral of busy cores over time), ``core_w`` the device's, else ``cpu_w / cores`` (the whole
  CPU's figure spread evenly: all cores busy draw ``cpu_w``). Overlapping lanes cost what they use.
  ``cpu_busy_s`` is then the union's, for comparison.
- ``lanes``: every span on its own (the sum of run and load durations, overlap counted twice), an
  upper bound for concurrent lanes (not a device rule; `cpu_busy_s(trace, "lanes")`).

From a summary alone (no trace), ``cpu_busy_s`` is the summary's own ``cpu_busy_s`` if present,
else ``e2e_s``; ``core_busy_s`` the summary's, else ``cpu_busy_s`` (one core).
Model arithmetic beside the summary (stdlib only), so the simulator and the runner add it without
importing the report layer.

    from atomsim.schema.energy import add_energy
    summary = add_energy(summary, trace, scenario.device, threads={step.id: step.threads ...})
"""
from __future__ import annotations

RULES = ("union", "lanes", "per-core")
DEVICE_RULES = ("union", "per-core")
F7 = "paper appendix F.7"


def _get(device, key, default=None):
    return device.get(key, default) if isinstance(device, dict) else getattr(device, key, default)


def _power(device) -> tuple[float, float]:
    return float(_get(device, "cpu_w", 2.0)), float(_get(device, "dram_w", 0.2))


def device_rule(device) -> str:
    return str(_get(device, "energy_rule", None) or "union")


def core_power(device) -> tuple[float, str]:
    """(watts per busy core, where the figure comes from) of `device` for the per-core rule."""
    core_w = _get(device, "core_w", None)
    if core_w is not None:
        return float(core_w), "the device's core_w"
    cores = int(_get(device, "cores", 1) or 1)
    return _power(device)[0] / cores, f"cpu_w / cores ({cores}): the whole CPU's figure spread evenly"


def _busy_spans(trace):
    return sorted((s.start_s, s.end_s, getattr(s, "step", "")) for s in trace.spans
                  if s.kind in ("run", "load") and s.end_s > s.start_s)


def cpu_busy_s(trace, rule: str = "union") -> float:
    """CPU busy seconds of a trace under `rule` (see the module docstring; `per-core` gives the union's)."""
    if rule not in RULES:
        raise ValueError(f"unknown energy rule {rule!r}; valid: {', '.join(RULES)}")
    spans = _busy_spans(trace)
    if rule == "lanes":
        return float(sum(e - s for s, e, _ in spans))
    busy, cur_s, cur_e = 0.0, None, None
    for s, e, _ in spans:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        busy += cur_e - cur_s
    return float(busy)


def core_busy_s(trace, cores: int, threads: dict | None = None) -> float:
    """Core-seconds busy: the integral over time of min(cores, threads of the run and load steps
    executing). `threads`: step id -> its threads (default 1 each)."""
    threads = threads or {}
    edges = []
    for s, e, step in _busy_spans(trace):
        n = int(threads.get(step, 1) or 1)
        edges += [(s, n), (e, -n)]
    edges.sort()
    total, running, last = 0.0, 0, None
    for t, dn in edges:
        if last is not None and running > 0:
            total += (t - last) * min(cores, running)
        running, last = running + dn, t
    return float(total)


def energy_parts(summary_or_trace, device, rule: str | None = None, threads: dict | None = None) -> dict:
    """{energy_j, energy_cpu_j, energy_dram_j, cpu_busy_s[, core_busy_s]} of a trace or a summary
    dict on `device`, under `rule` (default: the device's `energy_rule`, else union)."""
    rule = rule or device_rule(device)
    cpu_w, dram_w = _power(device)
    if isinstance(summary_or_trace, dict):
        e2e = float(summary_or_trace.get("e2e_s") or 0.0)
        busy = float(summary_or_trace.get("cpu_busy_s", e2e) or 0.0)
        cores_busy = float(summary_or_trace.get("core_busy_s", busy) or 0.0)
    else:
        e2e = float(summary_or_trace.e2e_s)
        busy = cpu_busy_s(summary_or_trace, "union" if rule == "per-core" else rule)
        cores_busy = core_busy_s(summary_or_trace, int(_get(device, "cores", 1) or 1), threads) \
            if rule == "per-core" else None
    out = {"cpu_busy_s": busy}
    cpu_j = cpu_w * busy
    if rule == "per-core":
        cpu_j = core_power(device)[0] * cores_busy
        out["core_busy_s"] = cores_busy
    dram_j = dram_w * e2e
    return {"energy_j": cpu_j + dram_j, "energy_cpu_j": cpu_j, "energy_dram_j": dram_j, **out}


def energy_j(summary_or_trace, device, rule: str | None = None, threads: dict | None = None) -> float:
    """Joules of one pipeline run: cpu_w × cpu_busy_s + dram_w × e2e_s (appendix F.7), or per core."""
    return energy_parts(summary_or_trace, device, rule, threads)["energy_j"]


def power_model(device, rule: str | None = None) -> dict:
    """The summary's `power_model`: cpu_w, dram_w, the rule and where the figures come from (for
    per-core also core_w and its source). F.7's phones keep the fields they always had."""
    rule = rule or device_rule(device)
    cpu_w, dram_w = _power(device)
    source = _get(device, "power_source", None) or \
        (F7 if (cpu_w, dram_w) == (2.0, 0.2) else "not given (the device's cpu_w and dram_w, no power_source)")
    out = {"cpu_w": cpu_w, "dram_w": dram_w, "rule": rule, "source": str(source)}
    if rule == "per-core":
        out["core_w"], out["core_w_source"] = core_power(device)
    return out


def rule_text(pm: dict) -> str:
    """A screen's words for a summary's power model: the rule, the figures, where they come from."""
    rule = pm.get("rule", "union")
    cpu = {"union": f"CPU {pm.get('cpu_w', 0):g} W while any lane is busy",
           "per-core": f"{pm.get('core_w', 0):.3g} W per busy core ({pm.get('core_w_source')})",
           "lanes": f"CPU {pm.get('cpu_w', 0):g} W per busy lane"}.get(rule, rule)
    return f"{cpu} + DRAM {pm.get('dram_w', 0):g} W while it runs (rule {rule}); figures: {pm.get('source') or F7}"


def add_energy(summary: dict, trace=None, device=None, rule: str | None = None, threads: dict | None = None) -> dict:
    """`summary` with energy_j, energy_cpu_j, energy_dram_j, cpu_busy_s (per-core: core_busy_s) and
    the power model added (a new dict; the input is not changed). Uses the trace when given, else
    the summary alone. `device`: a schema Device or a mapping with cpu_w/dram_w (default: the
    paper's 2.0 W / 0.2 W); `threads`: step id -> threads, for the per-core rule."""
    device = device if device is not None else {"cpu_w": 2.0, "dram_w": 0.2}
    parts = energy_parts(trace if trace is not None else summary, device, rule, threads)
    out = dict(summary)
    out.update(parts)
    out["power_model"] = power_model(device, rule)
    return out
