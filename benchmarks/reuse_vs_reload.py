"""Real end-to-end runs: reload vs reuse-serial vs reuse-parallel (small preset, 5 clips).

    python benchmarks/reuse_vs_reload.py [--store DIR] [--preset small] [--out DIR]

Makes a 30 s test video (5 clips of 10 s, stride 5 s), runs assembly and retrieval under the
three policies in this one process (one warm-up run of each task first, so that imports and
first-touch costs are not charged to the first policy), and prints end-to-end times, the
reduction against reload, and the peak RSS. The paper reports 27-33% lower latency for reuse.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

POLICIES = ("reload", "reuse-serial", "reuse-parallel")


def main(argv=None) -> int:
    from atomsim.process import pin_measurement_process, quiet_import_noise
    pin_measurement_process()   # the runs happen in this process: as `atomsim run` sets it up, before torch
    quiet_import_noise()
    import videos as tv

    from atomsim.run import run_scenario
    from atomsim.schema.scenario import load_scenario
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parent.parent / "scenarios" / "examples"
    work = Path(args.out or tempfile.mkdtemp(prefix="atomsim-bench-"))
    video = tv.make_video(work / "bench30.mp4", seconds=30.0, width=320, height=240, fps=10)
    rows = []
    for task in ("assembly", "retrieval"):
        sc = load_scenario(root / f"{task}-tiny.yaml").with_changes(
            **{"models.preset": args.preset, "name": f"{task}-{args.preset}", "workload.top_k": 3})
        run_scenario(sc, [video], policy="reuse-serial", out_dir=work / f"warmup-{task}", store=args.store,
                     progress=False)
        for policy in POLICIES:
            for r in range(args.repeats):
                res = run_scenario(sc, [video], policy=policy, out_dir=work / f"{task}-{policy}-{r}",
                                   store=args.store, progress=False)
                s = res.summary
                rows.append((task, policy, s["clips"], s["e2e_s"], s["peak_bytes"], s["stage_totals_s"]))
    print(f"{'task':<10} {'policy':<15} {'clips':>5} {'e2e s':>8} {'vs reload':>10} {'peak RSS MB':>12}   load s  caption s")
    for task in ("assembly", "retrieval"):
        mine = [r for r in rows if r[0] == task]
        base = min(r[3] for r in mine if r[1] == "reload")
        for t, policy, clips, e2e, peak, st in mine:
            red = (base - e2e) / base * 100
            print(f"{t:<10} {policy:<15} {clips:>5} {e2e:>8.2f} {red:>9.1f}% {peak / 1e6:>12.0f}   "
                  f"{st.get('load', 0):6.2f}  {st.get('caption', 0):8.2f}")
    print("paper (Pixel 5a / 8a / S23): reuse cuts end-to-end latency by 27-33% against reload")
    print(f"outputs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
