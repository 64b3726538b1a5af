"""The measured peaks of a validation suite's real runs against the simulator's peak range
(`peak_bytes` to `peak_high_bytes`: sim/engine.py), every run apart, re-simulated with today's
simulator from the suite's own scenario files and profile.

    python benchmarks/peak_ranges.py benchmarks/results/validation-small-2026-12-03 [--write]

Prints a Markdown table (`--write`: also DIR/peak-ranges.md). Exits 1 when a case's scenario or
the profile is missing, or a simulated summary has no range.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 10**6
BAND_PCT = 5.0


def rows(d: Path) -> list[dict]:
    from atomsim.schema.profile import load_profile
    from atomsim.schema.scenario import load_scenario
    from atomsim.sim import simulate
    from atomsim.validate.compare import error_pct, range_error_pct
    result = json.loads((d / "fidelity.json").read_text())
    profile = load_profile(d / "profile-small.json")
    out = []
    for case in result["scenarios"]:
        sc = load_scenario(d / case["name"] / "scenario.yaml")
        s = simulate(sc, profile, policy=case["policy"]).summary
        low, high = s["peak_bytes"], s["peak_high_bytes"]
        peaks = [r["peak_bytes"] for r in case["measured_repeats"]]
        out.append({"name": case["name"], "policy": case["policy"], "low": low, "high": high, "peaks": peaks,
                    "point": [round(error_pct(p, low), 1) for p in peaks],
                    "range": [round(range_error_pct(p, low, high), 1) for p in peaks]})
    return out


def markdown(d: Path, rs: list[dict]) -> str:
    lines = [f"# Measured peaks against the simulated range: {d.name}", "",
             "Each real run's peak (the suite's 3 runs per scenario) against the simulated peak and against the "
             "range up to `peak_high_bytes` (sim/engine.py), re-simulated with today's simulator from the "
             f"suite's scenario files and profile. Remake: `python benchmarks/peak_ranges.py {d.relative_to(ROOT)} --write`.", "",
             "| scenario | policy | simulated (MB) | top of range (MB) | measured, by run (MB) | error against the peak | error against the range |",
             "|---|---|---|---|---|---|---|"]
    for r in rs:
        lines.append(f"| {r['name']} | {r['policy']} | {r['low'] / MB:.0f} | {r['high'] / MB:.0f} | "
                     f"{', '.join(f'{p / MB:.0f}' for p in r['peaks'])} | {', '.join(f'{e:+.1f}%' for e in r['point'])} | "
                     f"{', '.join(f'{e:+.1f}%' for e in r['range'])} |")
    point = [abs(e) for r in rs for e in r["point"]]
    ranged = [abs(e) for r in rs for e in r["range"]]
    lines += ["", f"Runs within {BAND_PCT:g}% of the peak: {sum(e <= BAND_PCT for e in point)} of {len(point)}; "
              f"of the range: {sum(e <= BAND_PCT for e in ranged)} of {len(ranged)} (worst {max(ranged):.1f}%).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    d = Path(a.dir).resolve()
    try:
        rs = rows(d)
    except (OSError, KeyError) as e:
        print(f"peak_ranges: {e}", file=sys.stderr)
        return 1
    md = markdown(d, rs)
    if a.write:
        from atomsim.io import atomic_write_text
        atomic_write_text(d / "peak-ranges.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
