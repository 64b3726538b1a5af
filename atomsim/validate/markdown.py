"""The fidelity report as Markdown tables."""
from __future__ import annotations

GB = 1e9


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:+.1f}%"


def fidelity_table(result: dict) -> str:
    src = result.get("profile_source")
    of = "" if src in (None, "measured") else f", {src} profile"   # a published or projected profile says so
    lines = [f"| scenario | policy | clips | measured e2e (s) | simulated e2e (s{of}) | error | measured peak (GB) | "
             f"simulated peak (GB{of}) | error |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["scenarios"]:
        lines.append(f"| {r['name']} | {r['policy']} | {r.get('clips', '')} | {r['measured_e2e_s']:.2f} | "
                     f"{r['simulated_e2e_s']:.2f} | {_pct(r['e2e_error_pct'])} | {r['measured_peak_bytes'] / GB:.3f} | "
                     f"{r['simulated_peak_bytes'] / GB:.3f} | {_pct(r['peak_error_pct'])} |")
    return "\n".join(lines)


def outcome_table(result: dict) -> str:
    """Under --ram-limit: the simulated and the measured outcome of each scenario."""
    rows = [r for r in result["scenarios"] if r.get("ram_limit_bytes")]
    if not rows:
        return ""
    lines = ["| scenario | policy | RAM limit (MB) | simulated | measured | cgroup peak (MB) |", "|---|---|---|---|---|---|"]
    for r in rows:
        peak = r.get("cgroup_peak_bytes")
        lines.append(f"| {r['name']} | {r['policy']} | {r['ram_limit_bytes'] / 1e6:.0f} | {r['simulated_outcome']} | "
                     f"{r['measured_outcome']} | {'?' if peak is None else f'{peak / 1e6:.0f}'} |")
    return "\n".join(lines)


def stage_table(result: dict) -> str:
    stages = ["load", "encode", "caption", "index", "script"]
    lines = ["| scenario | " + " | ".join(f"{s} meas/sim (s) err" for s in stages) + " |",
             "|---|" + "---|" * len(stages)]
    for r in result["scenarios"]:
        cells = []
        for s in stages:
            st = r["stages"].get(s)
            cells.append("" if not st else f"{st['measured_s']:.2f}/{st['simulated_s']:.2f} {_pct(st['error_pct'])}")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reduction_table(result: dict) -> str:
    lines = ["| reuse scenario | vs reload | measured reduction | per round | simulated reduction | error (pp) |",
             "|---|---|---|---|---|---|"]
    for d in result["reductions"]:
        rounds = d.get("measured_reduction_per_round_pct")
        lines.append(f"| {d['scenario']} ({d['policy']}) | {d['reload']} | {d['measured_reduction_pct']:.1f}% | "
                     + (", ".join(f"{x:.1f}" for x in rounds) if rounds else "") + " | "
                     f"{d['simulated_reduction_pct']:.1f}% | {d['error_pp']:+.1f} |")
    if any(d.get("measured_reduction_per_round_pct") for d in result["reductions"]):
        lines.append("\nMeasured reduction: the median of the rounds' reductions (each round's reuse run against "
                     "the reload run of the same round, minutes apart: a paired comparison on a machine whose "
                     "speed drifts).")
    return "\n".join(lines)


def fidelity_markdown(result: dict, pictures: str = "") -> str:
    """The report as markdown; `pictures`: path prefix of the <scenario>.png links (beside it: "")."""
    s = result["summary"]
    m = result["machine"]

    def fmt(d, unit):
        return "n/a" if d["median"] is None else f"median {d['median']:.1f}{unit}, max {d['max']:.1f}{unit} (n={d['n']})"

    rep = result.get("repeat", 1)
    spreads = []
    for r in result["scenarios"]:
        xs = [x["e2e_s"] for x in r.get("measured_repeats", [])]
        if len(xs) > 1:
            spreads.append((r["name"], 100.0 * (max(xs) - min(xs)) / sorted(xs)[(len(xs) - 1) // 2]))
    noise = ""
    if spreads:
        import statistics
        worst = max(spreads, key=lambda x: x[1])
        noise = (f"\n- measured: median of {rep} real runs per scenario, in interleaved rounds; run-to-run spread "
                 f"of the end-to-end time ((max − min) / median): median {statistics.median(x[1] for x in spreads):.1f}%, "
                 f"max {worst[1]:.1f}% ({worst[0]})")
    nz = s.get("measurement_noise")
    if nz:
        noise += ("\n- how the measurement repeats itself (each real run against the median of the other runs of its "
                  f"scenario; each round's reduction against the other rounds'): end-to-end {fmt(nz['e2e_abs_pct'], '%')}; "
                  f"reduction {fmt(nz['reduction_abs_pp'], ' pp')}. An exact model would show errors of this size "
                  "against a single run")
    return "\n\n".join([
        "# atomsim fidelity report",
        f"Date: {result['date']}. Machine: {m.get('cpu', '?')} ({m.get('machine')}, {m.get('cpus')} CPUs), "
        f"{m.get('platform')}, Python {m.get('python')}, torch {m.get('torch', '?')}" +
        (f", huge pages for torch buffers: {'on' if m['huge_pages'].get('in_use') else 'off'} "
         f"(kernel THP {m['huge_pages'].get('kernel_thp')}, THP_MEM_ALLOC_ENABLE={m['huge_pages'].get('torch_thp_alloc')})"
         if m.get("huge_pages") else "") + ". "
        f"Profile: `{result.get('profile')}` (source: {result.get('profile_source')}" +
        (f"; {result['profile_is']}" if result.get("profile_is") else "") +
        ("; measured by this validation, its rounds between the rounds of real runs" if result.get("profile_interleaved") else "") + ").",
        "## Summary\n\n"
        f"- end-to-end time, |error|: {fmt(s['e2e_abs_error_pct'], '%')}\n"
        f"- peak memory, |error|: {fmt(s['peak_abs_error_pct'], '%')}\n"
        f"- reduction against reload, |error|: {fmt(s['reduction_abs_error_pp'], ' pp')}\n"
        f"- largest end-to-end error: {s['worst_e2e']}; largest peak error: {s['worst_peak']}" + noise +
        "".join(f"\n- warning: {w}" for w in result.get("warnings") or []),
        "## End-to-end time and peak memory\n\n" + fidelity_table(result),
        *(["## Under a RAM limit\n\n" + outcome_table(result)] if outcome_table(result) else []),
        "## Stages (busy time summed over steps)\n\n" + stage_table(result),
        "## Reduction against reload\n\n" + reduction_table(result),
        "Errors are (simulated − measured) / measured. For each scenario a picture draws the measured "
        "timeline above the simulated one: " + ", ".join(f"[{r['name']}]({pictures}{r['name']}.png)"
                                                        for r in result["scenarios"]) + ".\n",
    ])
