"""Sweep speed: a 10,000-point study on the Pixel 5a published profile, with 1 and 2 workers.

    /work/venv/bin/python benchmarks/sweep_speed.py [--points 10000] [--workers 1 2] [--dask]

Grid: 4 policies x 10 clip counts x 5 frames per clip x 50 RAM limits (3 to 12 GB) = 10,000 points.
Prints points per second per executor (and the CPU seconds spent, with the load average: on a
shared machine wall-clock scaling with workers says little), and checks the tables are identical.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_s() -> float:
    """User + system CPU seconds of this process and its reaped children (worker processes)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def study_yaml(points: int) -> str:
    per = max(2, points // 200)   # policies x clips x frames = 200
    rams = [round(3 + 9 * i / (per - 1), 4) for i in range(per)]
    return f"""name: sweep-speed
base: {ROOT}/scenarios/paper/assembly-pixel_5a.yaml
grid:
  policy: [reload, reuse-serial, reuse-parallel, baseline-resident]
  workload.clips: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  workload.frames_per_clip: [2, 4, 6, 8, 10]
  device.ram_gb: {rams}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dask", action="store_true", help="also run on a Dask LocalCluster (2 worker processes)")
    args = ap.parse_args()
    from atomsim.report.study import load_study
    from atomsim.report.sweep import run_sweep
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "study.yaml").write_text(study_yaml(args.points))
        study = load_study(tmp / "study.yaml")
        print(f"study: {study.size()} points ({' x '.join(str(len(v)) for v in study.grid.values())})")
        runs = [(f"{w} worker{'s' if w > 1 else ''}", dict(workers=w)) for w in args.workers]
        if args.dask:
            runs.append(("dask LocalCluster, 2 workers", dict(workers=2, dask="local")))
        tables = []
        for label, kw in runs:
            out = tmp / label.replace(" ", "_").replace(",", "")
            t0, c0 = time.perf_counter(), cpu_s()
            res = run_sweep(study, out, plots=False, **kw)
            dt, cpu = time.perf_counter() - t0, cpu_s() - c0
            failed = sum(1 for r in res.rows if r["error"])
            print(f"{label:>30}: {len(res.rows)} points in {dt:7.1f} s = {len(res.rows) / dt:7.1f} points/s "
                  f"({failed} failed, {sum(1 for r in res.rows if r['oom'])} out of memory; "
                  f"CPU {cpu:.1f} s = {1000 * cpu / len(res.rows):.2f} ms/point; load {os.getloadavg()[0]:.1f})")
            tables.append((out / "points.csv").read_bytes())
        t0 = time.perf_counter()
        from atomsim.report.sweep_plots import plot_all
        plot_all(study, res.rows, tmp)
        print(f"{'plots':>30}: {time.perf_counter() - t0:.1f} s")
        print("tables identical across executors:", all(t == tables[0] for t in tables))


if __name__ == "__main__":
    main()
