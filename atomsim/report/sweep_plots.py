"""Plots of a sweep (PNG, matplotlib Agg): end-to-end time against a field (clip count) per policy,
the reuse-over-reload reduction as a heatmap over two fields, peak memory against the RAM limit
with the out-of-memory region marked. Options come from the study's `plots:` mapping:
`x` (default workload.clips), `heatmap: [F1, F2]`, `reuse` (default reuse-parallel), `ram`.

Axes are labelled in words with units (`field_label`) and linear, unless the data spans a decade
or more on both (then log-log: a linear growth stays a straight line); the heatmap's colour scale
starts at zero (centred on it when savings and losses mix), its values written in the cells."""
from __future__ import annotations

import math
from pathlib import Path

from ..io import atomic_path

GB = 1e9
POLICY_COLORS = {"reload": "#d62728", "reuse-serial": "#1f77b4", "reuse-parallel": "#2ca02c",
                 "baseline-resident": "#9467bd"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    _plt().close(fig)
    return path


def _short(f: str) -> str:
    return f.split(".")[-1]


FIELD_LABELS = {
    "workload.clips": "clips (count)", "workload.top_k": "top-k clips (count)",
    "workload.frames_per_clip": "frames per clip (count)", "workload.frame_size": "frame side (pixels)",
    "workload.clip_length_s": "clip length (s)", "workload.clip_stride_s": "clip stride (s)",
    "workload.caption_tokens": "caption tokens (count)", "workload.script_tokens": "script tokens (count)",
    "workload.beam": "beam width", "workload.queue_size": "clips in flight (queue size)",
    "workload.requests": "requests (count)", "workload.think_s": "pause between requests (s)",
    "device": "device", "device.ram_gb": "RAM for the app (GB)", "device.ram_bytes": "RAM for the app (bytes)",
    "device.cores": "CPU cores (count)", "models.quant": "quantization backend", "models.preset": "model preset",
    "policy": "policy", "variant": "pipeline variant", "page_cache": "page cache at start",
}
UNITS = (("_gb", "GB"), ("_mb", "MB"), ("_bytes", "bytes"), ("_s", "s"), ("_hz", "Hz"), ("_w", "W"))


def field_label(f: str) -> str:
    """A grid field in words, with its unit: `device.ram_gb` -> "RAM for the app (GB)"."""
    if f in FIELD_LABELS:
        return FIELD_LABELS[f]
    if f.startswith("threads."):
        return f"threads of the {_short(f)} lane (count)"
    word = _short(f)
    unit = next((u for suffix, u in UNITS if word.endswith(suffix)), None)
    if unit:
        word = word[: word.rfind("_")]
    return word.replace("_", " ") + (f" ({unit})" if unit else "")


def _decades(values) -> bool:
    """Whether positive values span a decade or more."""
    vs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return bool(vs) and min(vs) > 0 and max(vs) / min(vs) >= 10


def _xaxis(study, f):
    """(positions of values, tick labels or None, numeric?) for grid field f."""
    vs = study.grid[f]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs):
        return {v: float(v) for v in vs}, None, True
    return {v: float(i) for i, v in enumerate(vs)}, [str(v) for v in vs], False


def _pick_x(study):
    p = study.plots
    if p.get("x"):
        return p["x"]
    if "workload.clips" in study.grid:
        return "workload.clips"
    others = [f for f in study.fields if f != "policy"]
    return others[0] if others else None


def _series(study, rows, x, exclude=()):
    """Rows grouped into lines: key = (policy, other field values), sorted by x."""
    others = [f for f in study.fields if f not in (x, "policy", *exclude)]
    lines: dict[tuple, list] = {}
    for r in rows:
        if r["error"]:
            continue
        key = (r.get("policy", study.base.get("policy")), tuple((f, r[f]) for f in others))
        lines.setdefault(key, []).append(r)
    return lines


def _order(study, lines):
    """Lines in grid order (policy first, then the other fields' values)."""
    def rank(kv):
        pol, rest = kv[0]
        pols = study.grid.get("policy", [pol])
        return (pols.index(pol) if pol in pols else 0, tuple(study.grid[f].index(v) for f, v in rest))
    return sorted(lines.items(), key=rank)[:16]


def _styles(study, lines) -> dict:
    """Colour by policy, line style by the other fields' values (when there are few policies)."""
    pols = sorted({k[0] for k in lines})
    rests = sorted({k[1] for k in lines}, key=lambda rest: tuple(study.grid[f].index(v) for f, v in rest))
    if len(pols) > 4 or len(rests) > 4:
        return {k: {} for k in lines}
    ls = ["-", "--", ":", "-."]
    return {k: {"color": POLICY_COLORS.get(k[0]), "linestyle": ls[rests.index(k[1])]} for k in lines}


def _label(key):
    pol, rest = key
    return pol + (" (" + ", ".join(f"{_short(f)}={v}" for f, v in rest) + ")" if rest else "")


def _style_x(ax, study, x, pos, ticks, numeric, ys=()):
    """Label and scale the axes: log-log when both x and `ys` span decades, else linear."""
    if numeric and _decades(pos.values()) and _decades(ys):
        from matplotlib.ticker import FuncFormatter, NullFormatter
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sorted(pos.values()))                   # the grid's values, written plainly
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
    if ticks:
        ax.set_xticks(list(pos.values()), ticks, rotation=15)
    ax.set_xlabel(field_label(x))
    ax.grid(True, alpha=0.3, which="both" if ax.get_yscale() == "log" else "major")


def plot_e2e(study, rows, out: Path) -> Path | None:
    x = _pick_x(study)
    if x is None:
        return None
    plt = _plt()
    pos, ticks, numeric = _xaxis(study, x)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    lines = _series(study, rows, x)
    ooms, ys = [], []
    styles = _styles(study, lines)
    for key, rs in _order(study, lines):
        rs = sorted(rs, key=lambda r: pos[r[x]])
        ok = [r for r in rs if not r["oom"]]
        ys += [r["e2e_s"] for r in ok]
        line, = ax.plot([pos[r[x]] for r in ok], [r["e2e_s"] for r in ok], marker="o", ms=3, label=_label(key), **styles[key])
        oom = [pos[r[x]] for r in rs if r["oom"]]
        if oom:
            ooms.append((oom, line.get_color()))
    _style_x(ax, study, x, pos, ticks, numeric, ys)
    if ax.get_yscale() == "linear":
        ax.set_ylim(bottom=0)
    strip = ax.get_xaxis_transform()     # x in data, y in axes fractions: whatever the y scale
    for j, (oom, color) in enumerate(ooms):   # one strip per line, just above the axis
        ax.scatter(oom, [0.025 + 0.04 * j] * len(oom), marker="x", color=color, s=40, zorder=5, transform=strip,
                   label=None if j else "x: out of memory (run killed; no time)")
    if ooms:        # the strips do not widen the axis (axes-fraction y): every grid value in view
        lo, hi = min(pos.values()), max(pos.values())
        log = ax.get_xscale() == "log"
        pad = 0.0 if log else 0.05 * (hi - lo or 1.0)
        ax.set_xlim(lo / 1.2 if log else lo - pad, hi * 1.2 if log else hi + pad)
    ax.set_ylabel("end-to-end time (s)")
    ax.set_title(f"{study.name}: end-to-end time vs {field_label(x)}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out / f"e2e_vs_{_short(x)}.png")


def reductions(study, rows, reuse: str) -> dict:
    """{other field values: 100 × (1 − e2e(reuse)/e2e(reload))} over points matched on every other field."""
    others = [f for f in study.fields if f != "policy"]
    by = {}
    for r in rows:
        if not r["error"]:
            by[(r["policy"], tuple(r[f] for f in others))] = r
    out = {}
    for (pol, key), r in by.items():
        if pol != "reload" or (reuse, key) not in by:
            continue
        u = by[(reuse, key)]
        out[key] = math.nan if (r["oom"] or u["oom"] or not r["e2e_s"]) else 100.0 * (1 - u["e2e_s"] / r["e2e_s"])
    return out


def plot_heatmap(study, rows, out: Path) -> Path | None:
    pols = study.grid.get("policy", [])
    reuse = study.plots.get("reuse") or ("reuse-parallel" if "reuse-parallel" in pols else "reuse-serial")
    if "reload" not in pols or reuse not in pols:
        return None
    others = [f for f in study.fields if f != "policy"]
    fields = list(study.plots.get("heatmap") or others[:2])
    if not fields:
        return None
    red = reductions(study, rows, reuse)
    fy, fx = (fields + [None])[:2] if len(fields) == 2 else (None, fields[0])
    if len(fields) == 2:
        fy, fx = fields[0], fields[1]
    xs = study.grid[fx]
    ys = study.grid[fy] if fy else [""]
    grid, oom = [], []
    for yv in ys:
        row, orow = [], []
        for xv in xs:
            vals = [v for k, v in red.items() if k[others.index(fx)] == xv and (fy is None or k[others.index(fy)] == yv)]
            ok = [v for v in vals if not math.isnan(v)]
            row.append(sum(ok) / len(ok) if ok else math.nan)
            orow.append(bool(vals) and not ok)
        grid.append(row)
        oom.append(orow)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.5, 0.75 * len(xs) + 2.5), max(2.6, 0.5 * len(ys) + 1.8)))
    cmap, norm = heat_scale([v for row in grid for v in row])
    cmap = plt.get_cmap(cmap).with_extremes(bad="#bdbdbd")   # no value (out of memory): grey, not 0%'s white
    im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", origin="lower")
    _cell_texts(ax, im, grid, oom)
    long = len(xs) > 8 or max(len(str(v)) for v in xs) > 8
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=25 if long else 0, ha="right" if long else "center")
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    if fy is None:
        ax.tick_params(axis="y", left=False)
    ax.set_xlabel(field_label(fx))
    ax.set_ylabel(field_label(fy) if fy else "")
    fig.colorbar(im, ax=ax, label=f"time saved by {reuse}\nagainst reload (%)")
    extra = [f for f in others if f not in fields]
    ax.set_title(f"{study.name}: time saved by {reuse} against reload"
                 + (f" (mean over {', '.join(map(field_label, extra))})" if extra else ""), fontsize=10)
    return _save(fig, out / "reuse_reduction_heatmap.png")


def heat_scale(values):
    """(colormap, norm) of a heatmap: from zero to the largest saving (all savings), from the largest
    loss to zero (all losses), else centred on zero, as far either way (savings blue, losses red)."""
    from matplotlib.colors import Normalize
    vs = [v for v in values if not math.isnan(v)]
    lo, hi = (min(vs), max(vs)) if vs else (0.0, 1.0)
    if lo >= 0:
        return "Blues", Normalize(0.0, hi or 1.0)
    if hi <= 0:
        return "Reds_r", Normalize(lo, 0.0)
    m = max(-lo, hi)
    return "RdBu", Normalize(-m, m)


def _cell_texts(ax, im, grid, oom) -> None:
    """Each cell's value (or OOM), black or white as the cell's colour is light or dark."""
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            if oom[i][j]:
                ax.text(j, i, "OOM", ha="center", va="center", color="#a50f15", fontsize=8, fontweight="bold")
            elif not math.isnan(v):
                r_, g_, b_, _ = im.cmap(im.norm(v))
                ax.text(j, i, f"{v:.1f}%" if abs(v) < 10 else f"{v:.0f}%", ha="center", va="center", fontsize=8,
                        color="black" if 0.299 * r_ + 0.587 * g_ + 0.114 * b_ > 0.5 else "white")


def plot_memory(study, rows, out: Path) -> Path | None:
    x = study.plots.get("ram") or next((f for f in ("device.ram_gb", "device.ram_bytes") if f in study.grid), None) \
        or _pick_x(study)
    if x is None:
        return None
    plt = _plt()
    pos, ticks, numeric = _xaxis(study, x)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    lines = _series(study, rows, x)
    styles = _styles(study, lines)
    ymax = 0.0
    for i, (key, rs) in enumerate(_order(study, lines)):
        rs = sorted(rs, key=lambda r: pos[r[x]])
        ys = [r["peak_bytes"] / GB for r in rs]
        ymax = max(ymax, *ys)
        ax.plot([pos[r[x]] for r in rs], ys, marker="o", ms=3, label=f"peak, {_label(key)}", **styles[key])
        oom = [(pos[r[x]], r["peak_bytes"] / GB) for r in rs if r["oom"]]
        if oom:
            ax.scatter(*zip(*oom), marker="x", color="red", s=45, zorder=5, label="out of memory" if i == 0 else None)
    ram = {}
    for r in rows:
        if r.get("ram_bytes"):
            ram.setdefault(pos[r[x]], []).append(r["ram_bytes"] / GB)
    if ram and min(min(v) for v in ram.values()) > 3 * ymax > 0:   # RAM far above every peak: zoom on the peaks
        ax.set_ylim(0, ymax * 1.25)
        ax.text(0.01, 0.97, f"RAM limit {min(min(v) for v in ram.values()):.1f} GB and above: off the chart, no OOM",
                transform=ax.transAxes, va="top", fontsize=8)
    elif ram:
        rx = sorted(ram)
        ry = [min(ram[v]) for v in rx]
        ymax = max(ymax, *ry) * 1.1
        ax.plot(rx, ry, color="black", lw=1.5, ls="--", label="RAM limit")
        ax.fill_between(rx, ry, [ymax] * len(rx), color="red", alpha=0.12, label="OOM region (peak > RAM)")
        ax.set_ylim(0, ymax)
    _style_x(ax, study, x, pos, ticks, numeric)
    ax.set_ylabel("peak memory (GB)")
    ax.set_title(f"{study.name}: peak memory vs {field_label(x)}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, out / f"peak_memory_vs_{_short(x)}.png")


def plot_all(study, rows, out: Path) -> list[Path]:
    return [p for p in (plot_e2e(study, rows, out), plot_heatmap(study, rows, out), plot_memory(study, rows, out)) if p]
