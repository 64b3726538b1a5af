"""Run the validation suite (scenarios/validation/) for real and simulated; time it.

    python benchmarks/validate_suite.py --profile profiles/host-small-validation.json --out docs

With --measure-profile the profile is measured by the same command, its rounds between the
rounds of real runs (both then see the same states of a machine whose speed drifts).

Makes its own video (65 s, 320x240, 10 fps, with audio: 12 clips of 10 s every 5 s), then runs
`atomsim validate --repeat 3` over every scenario of the suite (each compared through its median
run of 3, run in interleaved rounds) and writes DIR/fidelity.{json,md} and one
picture per scenario. Measure on a quiet machine: the real runs are timed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=str(ROOT / "profiles" / "host-small-validation.json"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "fidelity"))
    ap.add_argument("--store", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="real runs per scenario, interleaved rounds (default 3)")
    ap.add_argument("--measure-profile", action="store_true",
                    help="measure --profile now, its rounds between the rounds of real runs")
    ap.add_argument("--profile-samples", type=int, default=5)
    ap.add_argument("scenarios", nargs="*", default=[str(ROOT / "scenarios" / "validation")])
    args = ap.parse_args(argv)

    import videos

    from atomsim.cli import main as atomsim
    with tempfile.TemporaryDirectory() as d:
        video = videos.make_video(Path(d) / "walk.mp4", seconds=65.0, width=320, height=240, fps=10, audio=True)
        t0 = time.perf_counter()
        argv = ["validate", *args.scenarios, "--profile", args.profile, "--videos", str(video), "--out", args.out,
                "--repeat", str(args.repeat)]
        if args.store:
            argv += ["--store", args.store]
        if args.measure_profile:
            argv += ["--measure-profile", "--profile-samples", str(args.profile_samples)]
        code = atomsim(argv)
        print(f"\nsuite wall time: {time.perf_counter() - t0:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
