"""Pure comparison of a measured and a simulated execution of one plan. No torch, no I/O."""
from __future__ import annotations

import statistics

STAGES = ("load", "encode", "caption", "index", "script")


def error_pct(measured: float, simulated: float) -> float | None:
    """Signed error of the simulation, % of the measured value (None when nothing was measured)."""
    if measured is None or simulated is None or measured == 0:
        return None
    return 100.0 * (simulated - measured) / measured


def range_error_pct(measured: float, low: float, high: float) -> float | None:
    """Signed error of a simulated range [low, high], % of the measured value: 0 inside it, else
    against its nearer end (positive: the range lies above the measured value)."""
    if measured is None or low is None or measured == 0:
        return None
    high = low if high is None else high
    if measured < low:
        return error_pct(measured, low)
    return error_pct(measured, high) if measured > high else 0.0


def reduction_pct(reload_s: float, other_s: float) -> float:
    """How much faster `other` is than reload, % of reload."""
    return 100.0 * (reload_s - other_s) / reload_s


def compare_runs(name: str, measured: dict, simulated: dict) -> dict:
    """One row of the fidelity table from two summaries (summary.json dicts) of the same plan."""
    row = {
        "name": name, "task": measured.get("task"), "policy": measured.get("policy"),
        "measured_e2e_s": measured["e2e_s"], "simulated_e2e_s": simulated["e2e_s"],
        "e2e_error_pct": error_pct(measured["e2e_s"], simulated["e2e_s"]),
        "lower_bound_s": simulated.get("lower_bound_s"),
        "measured_peak_bytes": measured["peak_bytes"], "simulated_peak_bytes": simulated["peak_bytes"],
        "peak_error_pct": error_pct(measured["peak_bytes"], simulated["peak_bytes"]),
        # the top of the simulated peak's range (sim/engine.py: two lanes' ops in one heap), and the
        # measured peak against the range
        "simulated_peak_high_bytes": simulated.get("peak_high_bytes"),
        "peak_range_error_pct": range_error_pct(measured["peak_bytes"], simulated["peak_bytes"],
                                                simulated.get("peak_high_bytes")),
        "simulated_oom": simulated.get("oom", False),
        "stages": {},
    }
    m_st, s_st = measured.get("stage_totals_s", {}), simulated.get("stage_totals_s", {})
    for stage in STAGES:
        if stage in m_st or stage in s_st:
            m, s = m_st.get(stage, 0.0), s_st.get(stage, 0.0)
            row["stages"][stage] = {"measured_s": m, "simulated_s": s, "error_pct": error_pct(m, s)}
    return row


def reductions(rows: list[dict], groups: dict[str, str]) -> list[dict]:
    """For each reuse row whose group has a reload row: measured vs simulated reduction (pp).

    `groups` maps row name -> group key (scenarios equal in everything but policy and name).
    With repeated runs in rounds (`measured_repeats`, the same count on both sides) the measured
    reduction is paired, as one compares two configurations on a machine whose speed drifts: the
    reduction of each round (the reuse run against the reload run of the same round, minutes
    apart) and their median; else it is taken between the two median runs."""
    out = []
    reload_of = {groups[r["name"]]: r for r in rows if r["policy"] == "reload"}
    for r in rows:
        base = reload_of.get(groups[r["name"]])
        if r["policy"] == "reload" or base is None:
            continue
        b_runs = [x["e2e_s"] for x in base.get("measured_repeats") or []]
        r_runs = [x["e2e_s"] for x in r.get("measured_repeats") or []]
        if len(b_runs) >= 2 and len(b_runs) == len(r_runs):
            per_round = [reduction_pct(b, o) for b, o in zip(b_runs, r_runs)]
            m, how = statistics.median(per_round), "median of per-round reductions"
        else:
            per_round, how = None, "between the median runs"
            m = reduction_pct(base["measured_e2e_s"], r["measured_e2e_s"])
        s = reduction_pct(base["simulated_e2e_s"], r["simulated_e2e_s"])
        out.append({"group": groups[r["name"]], "policy": r["policy"], "reload": base["name"], "scenario": r["name"],
                    "measured_reduction_pct": m, "measured_reduction_method": how,
                    "measured_reduction_per_round_pct": per_round,
                    "simulated_reduction_pct": s, "error_pp": s - m})
    return out


def _stats(xs):
    xs = [abs(x) for x in xs if x is not None]
    return {"median": statistics.median(xs) if xs else None, "max": max(xs) if xs else None, "n": len(xs)}


def measurement_noise(rows: list[dict], reds: list[dict]) -> dict | None:
    """How well the measurement repeats itself: each real run against the median of the other runs
    of its scenario (end-to-end, %), and each round's reduction (`reductions`' per-round figures)
    against the median of the other rounds' (pp). A model that were exact
    would still show errors of this size against one run; None with fewer than 3 runs each."""
    e2e, red = [], []
    runs = {r["name"]: [x["e2e_s"] for x in r.get("measured_repeats") or []] for r in rows}

    def loo(xs):  # leave one out: x against the median of the others
        return [(xs[i], statistics.median(xs[:i] + xs[i + 1:])) for i in range(len(xs))]

    for xs in runs.values():
        if len(xs) >= 3:
            e2e += [100.0 * (x - m) / m for x, m in loo(xs)]
    for d in reds:
        per_round = d.get("measured_reduction_per_round_pct") or []
        if len(per_round) >= 3:
            red += [x - m for x, m in loo(per_round)]
    if not e2e:
        return None
    return {"e2e_abs_pct": _stats(e2e), "reduction_abs_pp": _stats(red)}


def summarize_errors(rows: list[dict], reds: list[dict]) -> dict:
    return {
        "e2e_abs_error_pct": _stats(r["e2e_error_pct"] for r in rows),
        "peak_abs_error_pct": _stats(r["peak_error_pct"] for r in rows),
        "reduction_abs_error_pp": _stats(r["error_pp"] for r in reds),
        "worst_e2e": max(rows, key=lambda r: abs(r["e2e_error_pct"] or 0))["name"] if rows else None,
        "worst_peak": max(rows, key=lambda r: abs(r["peak_error_pct"] or 0))["name"] if rows else None,
        "measurement_noise": measurement_noise(rows, reds),
    }
