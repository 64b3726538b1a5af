"""Search speed: `atomsim search` of the Pixel 5a assembly (the published profile, 5 clips) at
--ram 6GB 4GB 3.5GB, every policy: schedules simulated per second on 1 and 2 local worker
processes (and a Dask cluster of separate processes with --dask).

    python benchmarks/search_speed.py [--workers 1 2] [--dask] [--budgets 6GB 4GB 3.5GB]

Prints points (schedule x budget) per second and the time a 10,000-point search takes at that
rate (goal: under 15 s on 2 cores), with the CPU seconds spent and the load average (on a shared
machine wall-clock scaling says little). Exits 1 when a point failed (an error, not an
out-of-memory: those are results) or when the tables of the executors differ.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCENARIO = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
GOAL_S = 15.0


def cpu_s() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def one(budgets, workers: int, dask: str | None, out: Path):
    from atomsim.report.search import parse_budgets, run_search
    t0, c0 = time.perf_counter(), cpu_s()
    res = run_search(SCENARIO, parse_budgets(budgets), out, workers=workers, dask=dask)
    return res, time.perf_counter() - t0, cpu_s() - c0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dask", action="store_true", help="also a local Dask cluster of separate processes")
    ap.add_argument("--budgets", nargs="+", default=["6GB", "4GB", "3.5GB"])
    a = ap.parse_args(argv)
    runs = [(f"{w} local process{'es' if w > 1 else ''}", w, None) for w in a.workers]
    if a.dask:
        runs.append((f"Dask, {max(a.workers)} worker processes", max(a.workers), "local"))
    tables, bad = {}, []
    with tempfile.TemporaryDirectory() as d:
        for name, workers, dask in runs:
            res, wall, cpu = one(a.budgets, workers, dask, Path(d) / name.replace(" ", "-").replace(",", ""))
            failed = [r for r in res.rows if r["error"]]
            n = len(res.rows)
            print(f"{name:32s} {n} points in {wall:6.2f} s: {n / wall:7.0f} points/s, 10,000 points in "
                  f"{10_000 * wall / n:5.1f} s (goal {GOAL_S:.0f} s); CPU {cpu:6.1f} s; load {os.getloadavg()[0]:.2f}")
            if failed:
                bad.append(f"{name}: {len(failed)} points failed, e.g. {failed[0]['error']}")
            tables[name] = (Path(d) / name.replace(" ", "-").replace(",", "") / "candidates.csv").read_bytes()
    if len(set(tables.values())) > 1:
        bad.append("the executors' tables differ")
    for b in bad:
        print("FAIL: " + b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
