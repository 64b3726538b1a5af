"""The search's picture: every candidate that fits as e2e against the RAM it needs (the top of its
simulated peak's range), the front, each budget as a vertical line and its best candidate marked."""
from __future__ import annotations

from pathlib import Path

from ..io import atomic_path

GB = 1e9


def plot_front(res, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fit = [r for r in res.rows if r["fits"]]
    fig, ax = plt.subplots(figsize=(8, 5))
    fixed = [r for r in fit if not str(r["policy"]).startswith("budget-")]
    budget = [r for r in fit if str(r["policy"]).startswith("budget-")]
    ax.scatter([r["charged_peak_high_bytes"] / GB for r in budget], [r["e2e_s"] for r in budget], s=8, color="#9ab",
               label="budget-policy schedules")
    ax.scatter([r["charged_peak_high_bytes"] / GB for r in fixed], [r["e2e_s"] for r in fixed], s=14, color="#e69f00",
               marker="s", label="fixed-policy schedules")
    front = sorted(res.pareto, key=lambda r: r["charged_peak_high_bytes"])
    ax.step([r["charged_peak_high_bytes"] / GB for r in front], [r["e2e_s"] for r in front], where="post", color="#0072b2",
            label="front (fastest for its peak)")
    for i, (label, n) in enumerate(res.budgets):
        colour = f"C{(i + 2) % 10}"
        ax.axvline(n / GB, color=colour, linestyle="--", linewidth=1, label=f"budget {label}")
        b = res.best[label]
        if b is not None:
            ax.scatter([b["charged_peak_high_bytes"] / GB], [b["e2e_s"]], s=80, facecolor="none", edgecolor=colour, linewidth=2)
    ax.set_xlabel("RAM needed: the top of the peak's range, as a RAM limit counts it (GB)")
    ax.set_ylabel("end-to-end time (s)")
    ax.set_ylim(bottom=0)
    ax.set_title("schedules that fit: time against RAM (circles: the best within each budget)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
