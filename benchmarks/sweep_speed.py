"""Sweep speed and memory: the Pixel 5a assembly (published profile), points of 1 to 10 clips over
a grid of policies, clips, threads and RAM, on local worker processes and on a Dask cluster of
separate processes.

    .venv/bin/python benchmarks/sweep_speed.py [--points 10000 100000] [--workers 1 2] [--dask]
                                               [--json OUT] [--max-rss-growth 10]

Grid: 4 policies x 10 clip counts (1-10) x 5 thread counts (threads.main 1-5) x points/200 RAM
limits (3 to 12 GB). Each sweep runs in a process of its own (so that its peak RSS is its own):
`run_sweep` with 1 or more local worker processes, or (--dask) sent to a Dask cluster of separate
processes on 127.0.0.1 started here (`dask scheduler` and `dask worker --no-nanny`, one thread
each, ports chosen free, the workers' statistical profiler off unless --dask-profiler) with as many
workers as the largest --workers.
Prints per run: points per second, CPU ms per point (the sweep's process, its workers and the
Dask processes: on a shared machine wall-clock says little), the peak RSS (VmHWM) of the sweep's
process and of its busiest worker (and of the Dask scheduler). Exits 1 when any point did not
complete (an error, or a row missing), when the tables of the executors differ, or when a peak
RSS at the largest --points is more than --max-rss-growth percent above the smallest's.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dask_cluster import dask_cluster  # noqa: E402  (the sweep tests' cluster of processes)

MB = 1024 * 1024


def study_yaml(points: int) -> str:
    per = max(2, points // 200)   # policies x clips x threads = 200
    rams = [round(3 + 9 * i / (per - 1), 4) for i in range(per)]
    return f"""name: sweep-speed
base: {ROOT}/scenarios/paper/assembly-pixel_5a.yaml
grid:
  policy: [reload, reuse-serial, reuse-parallel, baseline-resident]
  workload.clips: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  threads.main: [1, 2, 3, 4, 5]
  device.ram_gb: {rams}
"""


# ---- one sweep, in its own process (`--child`)
def child(study: str, out: str, workers: int, dask: str | None) -> None:
    """Run the sweep; print one JSON line: points, seconds, failed, CPU and peak RSS of this process."""
    from atomsim.report.sweep import run_sweep
    t0 = time.perf_counter()
    res = run_sweep(study, out, workers=workers, dask=dask, plots=False)
    dt = time.perf_counter() - t0
    failed = oom = n = 0
    first_error = ""
    for r in res.rows:   # streamed: the rows are read back from disk one at a time
        n += 1
        oom += bool(r["oom"])
        if r["error"]:
            failed += 1
            first_error = first_error or r["error"]
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rows": n, "seconds": dt, "failed": failed, "oom": oom, "first_error": first_error,
                      "cpu_s": me.ru_utime + me.ru_stime, "children_cpu_s": kids.ru_utime + kids.ru_stime,
                      "peak_rss": me.ru_maxrss * 1024, "children_peak_rss": kids.ru_maxrss * 1024}))


# ---- measuring other processes
def vm_hwm(pid: int) -> int | None:
    """Peak RSS (VmHWM) of a live process, in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Watch(threading.Thread):
    """Polls the peak RSS and CPU of a process, its descendants and some other processes (each
    figure is the last one read before the process ended)."""

    def __init__(self, root: int, others=()):
        super().__init__(daemon=True)
        self.root, self.others, self.stop = root, list(others), threading.Event()
        self.hwm: dict[int, int] = {}
        self.cpu: dict[int, float] = {}

    def pids(self) -> list[int]:
        import psutil
        try:
            kids = [p.pid for p in psutil.Process(self.root).children(recursive=True)]
        except psutil.Error:
            kids = []
        return [self.root, *kids, *self.others]

    def poll(self) -> None:
        for pid in self.pids():
            h, c = vm_hwm(pid), cpu_of(pid)
            if h is not None:
                self.hwm[pid] = max(h, self.hwm.get(pid, 0))
            if c is not None:
                self.cpu[pid] = max(c, self.cpu.get(pid, 0.0))

    def run(self) -> None:
        while not self.stop.wait(0.2):
            self.poll()


def profiled_cluster(workers: int, tmp: Path, profiler: bool = False):
    """The Dask cluster of separate processes the sweep tests use (tests/dask_cluster.py), with the
    workers' profiler off unless `profiler` (as `run_sweep(dask="local")` starts them)."""
    return dask_cluster(tmp, workers, {} if profiler else {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"},
                        cwd=ROOT)


def one_run(study: Path, out: Path, workers: int, dask: tuple | None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(study), str(out), str(workers)]
    others = []
    if dask:
        address, sched, wprocs = dask
        sched, wpids = sched.pid, [p.pid for p in wprocs]
        cmd.append(address)
        others = [sched, *wpids]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    watch = Watch(proc.pid, others)
    watch.start()
    c0 = {pid: cpu_of(pid) or 0.0 for pid in others}
    stdout, _ = proc.communicate()
    watch.stop.set()
    watch.join()
    watch.poll()   # the Dask processes are still alive: their final figures
    if proc.returncode or not stdout.strip():
        return {"rows": 0, "seconds": float("nan"), "failed": 0, "crashed": True,
                "first_error": f"the sweep's process exited {proc.returncode}"}
    got = json.loads(stdout.strip().splitlines()[-1])
    if dask:
        got["worker_peak_rss"] = [watch.hwm.get(p, 0) for p in wpids]
        got["scheduler_peak_rss"] = watch.hwm.get(sched, 0)
        got["dask_cpu_s"] = sum(watch.cpu.get(p, 0.0) - c0[p] for p in others)
    else:   # local workers: those seen alive, and the largest of those reaped (getrusage)
        seen = [h for pid, h in watch.hwm.items() if pid != proc.pid]
        got["worker_peak_rss"] = sorted(seen)[-workers:] if seen else []
        got["worker_peak_rss_reaped"] = got["children_peak_rss"] if workers > 1 else 0
    got["table_sha256"] = hashlib.sha256((out / "points.csv").read_bytes()).hexdigest()
    return got


def line(label: str, points: int, r: dict) -> str:
    cpu = r["cpu_s"] + r["children_cpu_s"] + r.get("dask_cpu_s", 0.0)
    workers = max([*r["worker_peak_rss"], r.get("worker_peak_rss_reaped", 0)], default=0)
    sched = f", scheduler {r['scheduler_peak_rss'] / MB:.0f} MB" if "scheduler_peak_rss" in r else ""
    return (f"{points:>7} {label:>24}: {r['rows']} rows in {r['seconds']:7.1f} s = {r['rows'] / r['seconds']:6.0f} "
            f"points/s; CPU {1000 * cpu / max(r['rows'], 1):.2f} ms/point; {r['failed']} failed, {r['oom']} out of "
            f"memory; peak RSS: sweep process {r['peak_rss'] / MB:.0f} MB, workers {workers / MB:.0f} MB{sched}; "
            f"load {os.getloadavg()[0]:.1f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, nargs="+", default=[10_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dask", action="store_true", help="also a Dask cluster of separate processes on 127.0.0.1")
    ap.add_argument("--no-local", action="store_true", help="with --dask: the Dask cluster only")
    ap.add_argument("--dask-profiler", action="store_true",
                    help="keep the Dask workers' statistical profiler on (Dask's default; its history, a tree of "
                         "stacks a second for an hour, makes a worker's RSS grow with the sweep's length)")
    ap.add_argument("--json", metavar="OUT", help="write the figures to this JSON file")
    ap.add_argument("--max-rss-growth", type=float, default=10.0, metavar="PCT",
                    help="fail when a peak RSS at the largest --points exceeds the smallest's by more (default 10)")
    a = ap.parse_args(argv)
    results, bad = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for points in a.points:
            study = tmp / f"study-{points}.yaml"
            study.write_text(study_yaml(points))
            runs = [] if a.no_local and a.dask else [
                (f"{w} local process{'es' if w > 1 else ''}", w, False) for w in a.workers]
            if a.dask:
                runs.append((f"Dask, {max(a.workers)} worker processes", max(a.workers), True))
            for label, workers, dask in runs:
                out = tmp / f"{points}-{label.replace(' ', '-').replace(',', '')}"
                with profiled_cluster(workers, tmp, a.dask_profiler) if dask else contextlib.nullcontext() as cluster:
                    r = one_run(study, out, workers, cluster)
                if r.get("crashed"):
                    bad.append(f"{points} points on {label}: {r['first_error']}")
                    continue
                results.append({"points": points, "executor": label, "workers": workers, "dask": dask, **r})
                print(line(label, points, r), flush=True)
                if r["failed"] or r["rows"] != points:
                    bad.append(f"{points} points on {label}: {r['rows']} rows, {r['failed']} failed "
                               f"(e.g. {r['first_error']!r})")
    bad += compare(results, a.max_rss_growth)
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "problems": bad,
                                            "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()}}, indent=1))
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    return 1 if bad else 0


def compare(results: list[dict], max_growth: float) -> list[str]:
    """Tables identical across executors at each size; Dask against local processes at the same
    worker count; peak RSS of the smallest and largest size, per executor."""
    bad = []
    for points in sorted({r["points"] for r in results}):
        same = [r for r in results if r["points"] == points]
        if len({r["table_sha256"] for r in same}) > 1:
            bad.append(f"{points} points: the tables differ between executors")
        for d in (r for r in same if r["dask"]):
            local = next((r for r in same if not r["dask"] and r["workers"] == d["workers"]), None)
            if local:
                print(f"{points:>7} Dask / local at {d['workers']} workers: "
                      f"{d['seconds'] / local['seconds']:.2f}x the time")
    sizes = sorted({r["points"] for r in results})
    if len(sizes) < 2:
        return bad
    for label in dict.fromkeys(r["executor"] for r in results):
        lo, hi = (next(r for r in results if r["executor"] == label and r["points"] == p)
                  for p in (sizes[0], sizes[-1]))
        pairs = [("sweep process", lo["peak_rss"], hi["peak_rss"]),
                 ("workers", max(lo["worker_peak_rss"], default=0), max(hi["worker_peak_rss"], default=0))]
        if lo["dask"]:
            pairs.append(("scheduler", lo["scheduler_peak_rss"], hi["scheduler_peak_rss"]))
        for what, x, y in pairs:
            if not x:
                continue
            growth = 100 * (y - x) / x
            print(f"{label:>24}: peak RSS of the {what}: {x / MB:.0f} MB at {sizes[0]} points, {y / MB:.0f} MB at "
                  f"{sizes[-1]} ({growth:+.1f}%)")
            if growth > max_growth and what != "scheduler":
                bad.append(f"{label}: peak RSS of the {what} grew {growth:.1f}% from {sizes[0]} to {sizes[-1]} points")
    return bad


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        s, o, w = sys.argv[2:5]
        child(s, o, int(w), sys.argv[5] if len(sys.argv) > 5 else None)
    else:
        sys.exit(main())
