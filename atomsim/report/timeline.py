"""Timeline picture of one or several traces: lanes as a Gantt chart over memory over time.

    plot_timeline([trace], "timeline.png")                       # one trace
    plot_timeline([sim, measured], "cmp.png", titles=["simulated", "measured"])

Each trace gets two panels, one above the other: its lanes (one bar per step, coloured by its
stage, a load or free labelled with its module) and its memory counter stacked by part (weights,
inputs, activations, load temporaries, runtime baseline) with its peak and, when near it, the
RAM limit. Steps and memory parts have palettes of their own (`STAGE_COLORS`, `MEM_COLORS`: no
colour shared, each with its legend). Every trace is drawn from its first step (a measured
trace's clock starts before it), on one time axis and one memory scale, so that they compare
at a glance. Agg backend, no display.
"""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_path
from ..schema.trace import BREAKDOWN, Trace

# steps, by stage (saturated): the pipelines' stages first, then colours for any other stage name
STAGE_COLORS = {
    "load": "#8c564b", "decode": "#bcbd22", "encode": "#1f77b4", "caption": "#ff7f0e", "index": "#2ca02c",
    "rank": "#17becf", "script": "#9467bd", "assemble": "#e377c2", "free": "#7f7f7f",
}
EXTRA_STAGE_COLORS = ("#1b9e77", "#7b4173", "#637939", "#9c9ede", "#e7298a", "#a65628")
# memory parts (light or dark, never a step's colour)
MEM_COLORS = {"weights": "#2f3e5c", "inputs": "#f2d16b", "activations": "#9fd8cb",
              "load_temporaries": "#d62728", "baseline": "#d9d9d9"}
MEM_LABELS = {"weights": "weights", "inputs": "inputs (frames, features)", "activations": "activations",
              "load_temporaries": "load temporaries", "baseline": "runtime baseline"}
PEAK_STYLE = {"color": "black", "linewidth": 0.9, "linestyle": ":"}
LIMIT_STYLE = {"color": "#67001f", "linewidth": 1.1, "linestyle": "--"}
FIG_W_IN, DPI, LABEL_PT = 11.0, 110, 6
PX_PER_CHAR = LABEL_PT * 0.62 / 72 * DPI     # a rough width of one label character, in pixels


def stage_colors(stages) -> dict[str, str]:
    """A colour for each stage: the fixed ones, then EXTRA_STAGE_COLORS in name order (grey when out)."""
    out = {s: c for s, c in STAGE_COLORS.items() if s in stages}
    extra = iter(EXTRA_STAGE_COLORS)
    for s in sorted(set(stages) - set(STAGE_COLORS)):
        out[s] = next(extra, "#bbbbbb")
    return out


def _base(step: str) -> str:
    """A step id without its request prefix (`r1/caption:3` -> `caption:3`)."""
    return step.rsplit("/", 1)[-1]


def step_labels(span) -> list[str]:
    """Labels for a step's bar, longest first: a load or free names its module."""
    if span.kind in ("load", "free") and span.instance:
        return [f"{span.kind} {span.instance}", span.instance]
    name = _base(span.step).split(":")[0]
    return [name + (f" {span.clip}" if span.clip is not None else ""), name]


def _origin(tr: Trace) -> tuple[float, float]:
    """(start, end) of a trace: its first step's start, its last step's end."""
    if not tr.spans:
        return 0.0, max((m[0] for m in tr.memory), default=0.0)
    return min(s.start_s for s in tr.spans), max(s.end_s for s in tr.spans)


def _fits(text: str, width_px: float) -> bool:
    return len(text) * PX_PER_CHAR + 4 <= width_px


def _draw_gantt(ax, tr: Trace, t0: float, px_per_s: float, colors: dict, t_end: float) -> None:
    lanes = list(tr.lanes)
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    outside: dict[tuple[int, int], float] = {}     # (lane, row above/below) -> right end of its last label
    labelled = 0
    for s in sorted(tr.spans, key=lambda s: (s.start_s, s.step)):
        y = lanes.index(s.lane) if s.lane in lanes else 0
        x, w = s.start_s - t0, s.dur_s
        bars.setdefault((y, s.stage), []).append((x, max(w, t_end * 1e-4)))
        if labelled >= 200:
            continue
        inside = next((t for t in step_labels(s) if _fits(t, w * px_per_s)), None)
        if inside is not None:
            labelled += 1
            ax.text(x + w / 2, y, inside, ha="center", va="center", fontsize=LABEL_PT, clip_on=True)
        elif s.kind == "load" and s.instance:          # a short load: its module beside the bar
            right = x + (len(s.instance) * PX_PER_CHAR + 4) / px_per_s
            row = next((r for r in (-1, 1) if outside.get((y, r), -1.0) <= x), None)
            if row is not None:
                outside[(y, row)] = right
                labelled += 1
                ax.text(x, y + row * 0.43, s.instance, ha="left", va="center", fontsize=LABEL_PT - 0.5,
                        color=colors.get("load", "black"), clip_on=True)
    for (y, stage), xs in sorted(bars.items()):
        ax.broken_barh(xs, (y - 0.3, 0.6), facecolors=colors.get(stage, "#bbbbbb"),
                       edgecolor="black", linewidth=0.3 if len(xs) < 500 else 0)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels(lanes)
    ax.set_ylim(len(lanes) - 0.35, -0.65)


def _draw_memory(ax, tr: Trace, t0: float, t1: float) -> float:
    """The stacked memory parts from the trace's first step to its end; its peak line. Returns the peak (GB)."""
    before = [m for m in tr.memory if m[0] <= t0]
    during = [m for m in tr.memory if t0 < m[0] <= t1]
    samples = before[-1:] + during
    if not samples:
        return 0.0
    ts = [max(0.0, m[0] - t0) for m in samples] + [t1 - t0]
    stacks = [[m[1].get(k, 0) / 1e9 for m in samples] + [samples[-1][1].get(k, 0) / 1e9] for k in BREAKDOWN]
    ax.stackplot(ts, *stacks, step="post", colors=[MEM_COLORS[k] for k in BREAKDOWN])
    peak = max(sum(m[1].values()) for m in samples) / 1e9
    ax.hlines(peak, 0, t1 - t0, **PEAK_STYLE)
    ax.annotate(f"peak {peak:.3f} GB", (t1 - t0, peak), xytext=(-2, 2), textcoords="offset points",
                ha="right", va="bottom", fontsize=7)
    return peak


def _legends(fig, colors: dict, limit_gb: float | None) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    steps = [Patch(facecolor=c, edgecolor="black", linewidth=0.3, label=s) for s, c in colors.items()]
    mem = [Patch(facecolor=MEM_COLORS[k], label=MEM_LABELS[k]) for k in BREAKDOWN]
    mem.append(Line2D([], [], label="peak (highest total)", **PEAK_STYLE))
    if limit_gb is not None:
        mem.append(Line2D([], [], label=f"RAM limit {limit_gb:.2f} GB", **LIMIT_STYLE))
    fig.legend(handles=steps, title="steps, by stage", loc="upper left", ncol=min(len(steps), 5) or 1,
               fontsize=7, title_fontsize=7, frameon=False, bbox_to_anchor=(0.01, 1.0))
    fig.legend(handles=mem, title="memory", loc="upper right", ncol=3, fontsize=7, title_fontsize=7,
               frameon=False, bbox_to_anchor=(0.99, 1.0))


def _limit(traces: list[Trace], limit_bytes: int | None, top: float) -> float | None:
    """The RAM limit to draw (GB): given, or the first trace's device RAM; only when near the peaks
    (a 24 GB host limit would flatten a 1.5 GB run)."""
    lim = limit_bytes or next((t.meta.get("ram_bytes") for t in traces if t.meta.get("ram_bytes")), None)
    return lim / 1e9 if lim and lim / 1e9 <= 2.5 * top else None


def plot_timeline(traces: list[Trace], path, titles: list[str] | None = None, limit_bytes: int | None = None) -> Path:
    """Draw `traces` one above the other into `path` (PNG, written atomically). Returns the path."""
    fig = timeline_figure(traces, titles, limit_bytes)       # sets the Agg backend
    import matplotlib.pyplot as plt
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def timeline_figure(traces: list[Trace], titles: list[str] | None = None, limit_bytes: int | None = None):
    """The matplotlib Figure of `plot_timeline` (the caller closes it)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = list(traces)
    if not traces:
        raise ValueError("plot_timeline needs at least one trace")
    titles = list(titles) if titles else [f"{t.task} / {t.policy} ({t.source})" for t in traces]
    spans = [_origin(t) for t in traces]
    t_end = max(b - a for a, b in spans) or 1.0
    ratios = []
    for t in traces:
        ratios += [max(len(t.lanes), 1) * 0.6 + 0.6, 1.6]
    fig, axes = plt.subplots(len(ratios), 1, figsize=(FIG_W_IN, sum(ratios) * 0.9 + 1.1), sharex=True,
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    axes = axes[:, 0]
    colors = stage_colors({s.stage for t in traces for s in t.spans})
    px_per_s = (FIG_W_IN - 1.3) * DPI / (t_end * 1.01)
    top = max((t.peak()[0] for t in traces), default=0) / 1e9 * 1.12
    limit_gb = _limit(traces, limit_bytes, top)
    top = max(top, (limit_gb or 0) * 1.05)
    for i, (tr, title, (t0, t1)) in enumerate(zip(traces, titles, spans)):
        gantt, mem = axes[2 * i], axes[2 * i + 1]
        _draw_gantt(gantt, tr, t0, px_per_s, colors, t_end)
        gantt.set_title(f"{title}  (e2e {tr.e2e_s:.2f} s)", fontsize=9, loc="left")
        _draw_memory(mem, tr, t0, t1)
        if limit_gb is not None:
            mem.axhline(limit_gb, **LIMIT_STYLE)
        if top > 0:
            mem.set_ylim(0, top)
        mem.set_ylabel("memory (GB)", fontsize=8)
        mem.tick_params(labelsize=7)
    axes[-1].set_xlabel("time since the first step (s)")
    axes[-1].set_xlim(0, t_end * 1.01)
    _legends(fig, colors, limit_gb)
    rows = max(-(-len(colors) // 5), -(-(len(BREAKDOWN) + 1 + (limit_gb is not None)) // 3))
    head = 0.3 + 0.17 * rows                                  # inches the two legends take
    fig.tight_layout(rect=(0, 0, 1, 1 - head / fig.get_figheight()))
    return fig
