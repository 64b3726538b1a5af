"""How fast the simulator is: a 1,000-clip assembly must simulate in under 2 s, and every run
must complete (a run that stops out of memory at its start is not a measurement of speed).

    python benchmarks/sim_speed.py

Simulates the paper's assembly on the published Pixel 5a profile under reuse-parallel (the
busiest plan: three lanes, CPU sharing) and reload, for 10, 100, 1,000 and 10,000 clips; prints
wall time, SimPy events and events per second (best of 3 for the small sizes). Growth should be
linear in the clip count.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atomsim.schema.profile import load_profile  # noqa: E402
from atomsim.schema.scenario import load_scenario  # noqa: E402
from atomsim.sim import simulate  # noqa: E402


def main() -> int:
    sc = load_scenario(ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml")
    prof = load_profile(ROOT / "profiles" / "paper-pixel_5a.json")
    print(f"{'policy':<15} {'clips':>6} {'wall (s)':>9} {'events':>8} {'events/s':>10} {'s per clip':>11} {'sim e2e (s)':>12}")
    ok = True
    for policy in ("reuse-parallel", "reload"):
        for n in (10, 100, 1000, 10000):
            best = None
            for _ in range(3 if n <= 1000 else 1):
                t0 = time.perf_counter()
                res = simulate(sc, prof, policy, clips=n)
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            done = res.summary["completed"]
            print(f"{policy:<15} {n:>6} {best:>9.3f} {res.events:>8} {res.events / best:>10.0f} "
                  f"{best / n * 1e3:>9.3f}ms {res.summary['e2e_s']:>12.1f}" + ("" if done else "  DID NOT COMPLETE (out of memory)"))
            if not done or (n == 1000 and best >= 2.0):
                ok = False
    print("every run completed and the 1,000-clip assembly under 2 s:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
