"""Repeatability of the profiler: two profiles of a preset taken back to back; for every op whose
median is over 10 ms, the two medians must agree within 10%. Prints every ratio.

    python benchmarks/profile_repeatability.py [--preset small] [--quant fp32 ...] [--threads 1,2]
                                               [--quick] [--corun] [--keep DIR]

Exit 0 when every compared op agrees, 1 otherwise.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from atomsim.profile import measure


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--quant", action="append", dest="quants")
    ap.add_argument("--threads", default=None, help="e.g. 1,2")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--store", default=None)
    ap.add_argument("--keep", default=None, help="directory to keep the two profiles in")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--min-median-s", type=float, default=0.010)
    ap.add_argument("--corun", action="store_true", help="also measure the co-run slowdown (then either run is a "
                    "complete profile, e.g. for the validation suite)")
    args = ap.parse_args(argv)
    threads = [int(x) for x in args.threads.split(",")] if args.threads else None
    outdir = Path(args.keep or tempfile.mkdtemp(prefix="atomsim-repeat-"))
    profs = []
    for i in (1, 2):
        t0 = time.time()
        profs.append(measure(args.preset, quants=args.quants, threads=threads, samples=args.samples, quick=args.quick,
                             store=args.store, out=outdir / f"run{i}.json", corun=args.corun, resume=False))
        print(f"run {i}: {time.time() - t0:.0f} s -> {outdir / f'run{i}.json'}", flush=True)
    a, b = profs
    bad = 0
    print(f"{'op':45s} {'threads':>7s} {'run1 ms':>9s} {'run2 ms':>9s} {'ratio':>7s}")
    for key in sorted(a.modules):
        if key not in b.modules:
            continue
        for op, oa in sorted(a.modules[key].ops.items()):
            ob = b.modules[key].ops.get(op)
            if ob is None:
                continue
            for t in sorted(oa.latency_s, key=int):
                if t not in ob.latency_s:
                    continue
                ma, mb = oa.latency_s[t].median, ob.latency_s[t].median
                ratio = mb / ma
                checked = min(ma, mb) > args.min_median_s
                ok = not checked or abs(ratio - 1) <= args.tolerance
                bad += not ok
                mark = "" if checked else "  (under 10 ms: not checked)"
                print(f"{key + ':' + op:45s} {t:>7s} {ma * 1e3:9.1f} {mb * 1e3:9.1f} {ratio:7.3f}"
                      f"{'' if ok else '  DISAGREE'}{mark}")
    print(f"{bad} op(s) outside {args.tolerance:.0%}" if bad else f"all ops over 10 ms agree within {args.tolerance:.0%}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
