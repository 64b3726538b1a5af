"""Where memory goes, step by step: a real run's cgroup charge against the simulator's.

    python benchmarks/ram_steps.py SCENARIO --video V [--policy P] [--limit 4GB] [--profile P]

Runs the scenario once under a generous RAM limit (atomsim run --ram-limit; root), samples its
memory cgroup from outside every 10 ms (v1 `memory.stat` rss: the anonymous memory a limit
cannot take back; v2 `memory.stat` anon) together with the steps running then (the run's event
log), and prints per step the largest anonymous memory seen beside the simulator's largest
charge (process memory less the baseline's file pages) during the same step. A step whose
measured figure is far above the simulated one is where a fit boundary is missed
(docs/fidelity-ram.md). Exits 1 when the run did not complete.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atomsim.io import atomic_write_text  # noqa: E402
from atomsim.run.limit import MemoryCgroup, parse_size, run_limited  # noqa: E402
from atomsim.schema.profile import load_profile  # noqa: E402
from atomsim.schema.scenario import load_scenario  # noqa: E402
from atomsim.sim import simulate  # noqa: E402
from atomsim.sim.engine import uncharged_baseline  # noqa: E402

MB = 10**6


class Sampler(threading.Thread):
    """Samples this process's child cgroups (run_limited names them atomsim-<our pid>-...)."""

    def __init__(self, events: Path):
        super().__init__(daemon=True)
        self.events, self.stop, self.series = events, threading.Event(), []   # (time, anon bytes, steps running)

    def run(self):
        import os
        parent, version = MemoryCgroup.find_parent()
        key = "rss" if version == 1 else "anon"
        pos, running, cg = 0, set(), None
        while not self.stop.wait(0.01):
            cg = cg or next(iter(parent.glob(f"atomsim-{os.getpid()}-*")), None)
            if cg is None:
                continue
            try:
                anon = int(dict(line.split() for line in (cg / "memory.stat").open())[key])
            except (OSError, KeyError, ValueError):
                continue
            if self.events.exists():
                with self.events.open() as f:
                    f.seek(pos)
                    text = f.read()
                whole = text[:text.rfind("\n") + 1]
                pos += len(whole)
                for line in whole.splitlines():
                    e = json.loads(line)
                    if e.get("kind") == "start":
                        running.add(e["step"])
                    elif e.get("kind") == "end":
                        running.discard(e["step"])
            self.series.append((time.monotonic(), anon, sorted(running)))

    def by_step(self) -> dict:
        """The largest anonymous memory sampled while each step ran."""
        out = {}
        for _, anon, running in self.series:
            for s in running:
                out[s] = max(out.get(s, 0), anon)
        return out


def simulated_by_step(sc, profile, policy) -> dict:
    """Largest simulated charge during each step (generous RAM)."""
    res = simulate(sc.with_changes(**{"device.ram_bytes": 64 * 10**9}), profile, policy)
    unch, mem, out = uncharged_baseline(profile), res.trace.memory, {}
    for sp in res.trace.spans:
        before = [sum(b.values()) for t, b in mem if t <= sp.start_s][-1:]
        during = [sum(b.values()) for t, b in mem if sp.start_s < t < sp.end_s]
        out[sp.step] = max(before + during) - unch
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--video", required=True)
    ap.add_argument("--policy", default=None)
    ap.add_argument("--limit", default="4GB", help="a limit the run fits in (default 4GB)")
    ap.add_argument("--profile", default=None, help="default: the scenario's")
    ap.add_argument("--series", default=None, metavar="CSV", help="also write every sample: seconds, MB, steps running")
    a = ap.parse_args(argv)
    sc = load_scenario(a.scenario)
    policy = a.policy or sc.policy
    profile = load_profile(a.profile or sc.profile)
    out = Path(tempfile.mkdtemp(prefix="ram-steps-"))
    sampler = Sampler(out / ".events.jsonl")
    sampler.start()
    summary = run_limited(Path(a.scenario), [a.video], out, parse_size(a.limit), policy=policy,
                          extra_args=["--no-progress"])
    time.sleep(0.05)
    sampler.stop.set()
    sampler.join()
    sim = simulated_by_step(sc, profile, policy)
    if a.series and sampler.series:
        t0 = sampler.series[0][0]
        atomic_write_text(a.series, "".join(f"{t - t0:.3f},{m / MB:.1f},{' '.join(s)}\n" for t, m, s in sampler.series))
    print(f"{summary['outcome']}; cgroup peak {summary['cgroup_peak_bytes'] / MB:.0f} MB; run in {out}")
    print(f"{'step':<28} {'measured anon (MB)':>19} {'simulated charge (MB)':>22} {'diff':>8}")
    measured = sampler.by_step()
    for step, sim_b in sim.items():
        m = measured.get(step)
        if m is None:
            print(f"{step:<28} {'(not sampled)':>19} {sim_b / MB:>22.1f}")
            continue
        print(f"{step:<28} {m / MB:>19.1f} {sim_b / MB:>22.1f} {(sim_b - m) / MB:>+8.1f}")
    return 0 if summary["outcome"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
