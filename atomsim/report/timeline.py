"""Timeline picture of one or several traces: lanes as a Gantt chart over memory over time.

    plot_timeline([trace], "timeline.png")                       # one trace
    plot_timeline([sim, measured], "cmp.png", titles=["simulated", "measured"])

Each trace gets two panels, one above the other: its lanes (one bar per step, coloured by stage)
and its memory counter stacked by category (weights, inputs, activations, load temporaries,
baseline). All traces share the time axis so they compare at a glance. Agg backend, no display.
"""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from ..schema.trace import BREAKDOWN, Trace

STAGE_COLORS = {
    "load": "#8c564b", "encode": "#1f77b4", "caption": "#ff7f0e", "index": "#2ca02c", "rank": "#17becf",
    "script": "#9467bd", "assemble": "#e377c2", "free": "#7f7f7f",
}
MEM_COLORS = {"weights": "#4c72b0", "inputs": "#dd8452", "activations": "#55a868",
              "load_temporaries": "#c44e52", "baseline": "#8172b3"}


def plot_timeline(traces: list[Trace], path, titles: list[str] | None = None, limit_bytes: int | None = None) -> Path:
    """Draw `traces` one above the other into `path` (PNG, written atomically). Returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    traces = list(traces)
    if not traces:
        raise ValueError("plot_timeline needs at least one trace")
    titles = list(titles) if titles else [f"{t.task} / {t.policy} ({t.source})" for t in traces]
    t_end = max([max((s.end_s for s in t.spans), default=0.0) for t in traces]
                + [max((m[0] for m in t.memory), default=0.0) for t in traces]) or 1.0
    ratios = []
    for t in traces:
        ratios += [max(len(t.lanes), 1) * 0.6 + 0.6, 1.6]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(11, sum(ratios) * 0.9 + 0.8), sharex=True,
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    axes = axes[:, 0]
    stages_seen: set[str] = set()
    for i, (tr, title) in enumerate(zip(traces, titles)):
        gantt, mem = axes[2 * i], axes[2 * i + 1]
        lanes = list(tr.lanes)
        bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
        labelled = 0
        for s in sorted(tr.spans, key=lambda s: (s.start_s, s.step)):
            y = lanes.index(s.lane) if s.lane in lanes else 0
            stages_seen.add(s.stage)
            bars.setdefault((y, s.stage), []).append((s.start_s, max(s.dur_s, t_end * 1e-4)))
            if s.dur_s > t_end * 0.04 and labelled < 200:
                labelled += 1
                label = s.step.split(":")[0] + (f" {s.clip}" if s.clip is not None else "")
                gantt.text(s.start_s + s.dur_s / 2, y, label, ha="center", va="center", fontsize=6, clip_on=True)
        for (y, stage), xs in sorted(bars.items()):
            gantt.broken_barh(xs, (y - 0.3, 0.6), facecolors=STAGE_COLORS.get(stage, "#bbbbbb"),
                              edgecolor="black", linewidth=0.3 if len(xs) < 500 else 0)
        gantt.set_yticks(range(len(lanes)))
        gantt.set_yticklabels(lanes)
        gantt.invert_yaxis()
        gantt.set_title(f"{title}  (e2e {tr.e2e_s:.2f} s)", fontsize=9, loc="left")
        if tr.memory:
            ts = [m[0] for m in tr.memory] + [t_end]
            stacks = [[m[1].get(k, 0) / 1e9 for m in tr.memory] + [tr.memory[-1][1].get(k, 0) / 1e9] for k in BREAKDOWN]
            mem.stackplot(ts, *stacks, step="post", colors=[MEM_COLORS[k] for k in BREAKDOWN],
                          labels=list(BREAKDOWN))
            peak, _ = tr.peak()
            mem.axhline(peak / 1e9, color="black", linewidth=0.6, linestyle=":")
        lim = limit_bytes or tr.meta.get("ram_bytes")
        # one memory scale for every trace drawn (so that they compare); the RAM limit is drawn
        # only when it is near the peaks (a 24 GB host limit would flatten a 1.5 GB run)
        top = max((t.peak()[0] for t in traces), default=0) / 1e9 * 1.1
        if lim and lim / 1e9 <= 2.5 * top:
            mem.axhline(lim / 1e9, color="red", linewidth=0.8, linestyle="--")
            top = max(top, lim / 1e9 * 1.05)
        if top > 0:
            mem.set_ylim(0, top)
        mem.set_ylabel("GB", fontsize=8)
        mem.tick_params(labelsize=7)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, t_end * 1.01)
    handles = [Patch(color=STAGE_COLORS.get(s, "#bbbbbb"), label=s) for s in STAGE_COLORS if s in stages_seen]
    handles += [Patch(color=MEM_COLORS[k], label=k) for k in BREAKDOWN]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 7), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    plt.close(fig)
    return path
