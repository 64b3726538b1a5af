"""What `atomsim search` writes (report/search.py): the candidate table (CSV, Parquet), the front,
a scenario per budget, search.json and the picture. Every file is written atomically."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from ..io import atomic_write_json, atomic_write_text
from ..schema.scenario import set_dotted
from ..schema.trace import BREAKDOWN
from .search import SEARCH_VERSION, SearchResult

SETTINGS = ("policy", "variant", "schedule.lanes", "schedule.modules", "threads.*", "workload.queue_size")
FIGURES = ("ram_bytes", "plan_ram_bytes", "fits", "completed", "oom", "e2e_s", "lower_bound_s", "peak_bytes", "charged_peak_bytes",
           "peak_high_bytes", "charged_peak_high_bytes", *(f"{k}_bytes" for k in BREAKDOWN), "loads", "cold_loads", "read_bytes", "energy_j", "cpu_busy_s", "error")


def columns(rows: list[dict]) -> list[str]:
    threads = sorted({k for r in rows for k in r if k.startswith("threads.")})
    return ["schedule", *[c for c in SETTINGS if c != "threads.*"], *threads, *FIGURES]


def best_scenario(base: dict, row: dict) -> dict:
    """The scenario of a candidate at a budget, as `simulate`, `run` and `validate` read it."""
    data = copy.deepcopy(base)
    for k, v in row["changes"].items():
        set_dotted(data, k, v)
    data["device"]["ram_bytes"] = int(row["plan_ram_bytes"])   # planned with the margin below the budget
    data["name"] = f"{base['name']}-best-{row['schedule']}"
    return data


def write_outputs(res: SearchResult, sc, base: dict, out: Path) -> list[Path]:
    import yaml
    from .sweep import write_tables   # the sweep's table writer: csv row by row, parquet typed alike
    cols = columns(res.rows)
    files = write_tables(None, res.rows, out, cols=cols, stem="candidates")
    files += write_tables(None, res.pareto, out, cols=cols, stem="pareto", parquet=False)
    for label, n in res.budgets:
        row = res.best[label]
        if row is None:
            continue
        path = out / f"best-{label}.yaml"
        data = best_scenario(base, row)
        head = (f"# atomsim search: the fastest schedule that fits {label} ({n} bytes; planned in "
                f"{row['plan_ram_bytes']} bytes, {res.margin_pct:g}% below it): "
                f"e2e {row['e2e_s']:.3f} s, peak {row['peak_bytes']} bytes, "
                f"{row['charged_peak_bytes']} as a RAM limit counts it, up to {row['charged_peak_high_bytes']} "
                f"at the top of its range (simulated)\n")
        atomic_write_text(path, head + yaml.safe_dump(data, sort_keys=False))
        files.append(path)
    atomic_write_json(out / "search.json", summary(res, sc))
    files.append(out / "search.json")
    from .search_plot import plot_front
    files.append(plot_front(res, out / "pareto.png"))
    return files


def brief(row: dict | None) -> dict | None:
    if row is None:
        return None
    keep = ("schedule", "policy", "variant", "schedule.lanes", "schedule.modules", "workload.queue_size",
            "e2e_s", "peak_bytes", "charged_peak_bytes", "charged_peak_high_bytes", "loads", "cold_loads", "read_bytes", "energy_j")
    return {k: row.get(k) for k in keep if k in row} | {k: v for k, v in row.items() if k.startswith("threads.")}


def summary(res: SearchResult, sc) -> dict:
    per = {}
    for label, n in res.budgets:
        b, f = res.best[label], res.best_fixed[label]
        gain = None if not (b and f) else round(100 * (f["e2e_s"] - b["e2e_s"]) / f["e2e_s"], 3)
        per[label] = {"ram_bytes": n, "best": brief(b), "best_fixed": brief(f), "faster_than_fixed_pct": gain,
                      "fits": sum(1 for r in res.rows if r["ram_bytes"] == n and r["fits"])}
    return {"version": SEARCH_VERSION, "scenario": sc.name, "margin_pct": res.margin_pct, "sampler": res.sampler,
            **({"device_mismatch": res.device_mismatch} if res.device_mismatch else {}), "device": sc.device.name, "profile": sc.profile,
            "candidates": len({r["schedule"] for r in res.rows}), "rows": len(res.rows),
            "minimum_bytes": res.minimum_bytes(), "budgets": per, "pareto": [brief(r) for r in res.pareto]}


def budget_lines(res: SearchResult) -> list[str]:
    """What the CLI prints per budget."""
    lines = []
    for label, n in res.budgets:
        b, f = res.best[label], res.best_fixed[label]
        if b is None:
            lines.append(f"{label}: nothing fits")
            continue
        lines.append(f"{label}: best {b['policy']} ({b['variant']}, {b.get('schedule.lanes') or '-'}, "
                     f"{b.get('schedule.modules') or '-'}) e2e {b['e2e_s']:.2f} s, peak {_range(b)}"
                     + (f"; best fixed policy {f['policy']} e2e {f['e2e_s']:.2f} s, peak {_range(f)}"
                        f" ({100 * (f['e2e_s'] - b['e2e_s']) / f['e2e_s']:.1f}% slower)" if f else
                        "; no fixed policy fits"))
    return lines


def _range(row: dict) -> str:
    """The charged peak and, where it differs, the top of its range: "1.16-1.23 GB"."""
    low, high = row["charged_peak_bytes"] / 1e9, row["charged_peak_high_bytes"] / 1e9
    return f"{low:.2f} GB" if f"{high:.2f}" == f"{low:.2f}" else f"{low:.2f}-{high:.2f} GB"


def read_search(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
