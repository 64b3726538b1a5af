"""Run the validation suite (scenarios/validation/) for real and simulated; time it.

    python benchmarks/validate_suite.py --profile profiles/host-small-validation.json --out docs

With --measure-profile the profile is measured by the same command, its rounds between the
rounds of real runs (both then see the same states of a machine whose speed drifts).

Makes its own video (65 s, 320x240, 10 fps, with audio: 12 clips of 10 s every 5 s), then runs
`atomsim validate --repeat 3` over every scenario of the suite (each compared through its median
run of 3, run in interleaved rounds) and writes DIR/fidelity.{json,md} and one
picture per scenario. Measure on a quiet machine: the real runs are timed.

The tiny preset's row (the README tour's scenario and its reload twin, on the 25 s 320x240 video
the tour makes, the profile measured between the rounds, written as DIR/profile-tiny.json; DIR
keeps only its json, md and yaml files, its pictures go to --pictures as validation-tiny-NAME.png):

    python benchmarks/validate_suite.py --tiny --out benchmarks/results/validation-tiny-quiet-2026-12-03 --pictures docs/pictures
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
TINY = [str(ROOT / "scenarios" / "examples" / "assembly-tiny.yaml"),
        str(ROOT / "scenarios" / "validation" / "tiny" / "assembly-tiny-reload.yaml")]
KEEP = (".json", ".md", ".yaml")   # what a --tiny run keeps of its output (no videos, logs or pictures)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=None,
                    help="default profiles/host-small-validation.json; with --tiny OUT/profile-tiny.json")
    ap.add_argument("--out", default=str(ROOT / "docs" / "fidelity"))
    ap.add_argument("--store", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="real runs per scenario, interleaved rounds (default 3)")
    ap.add_argument("--measure-profile", action="store_true",
                    help="measure --profile now, its rounds between the rounds of real runs")
    ap.add_argument("--profile-samples", type=int, default=5)
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny preset's row: the README tour's scenarios on its 25 s video, the profile measured "
                    "between the rounds into OUT/profile-tiny.json (unless --profile is given), only json/md kept")
    ap.add_argument("--pictures", default=None, help="with --tiny: where its pictures go (default: dropped)")
    ap.add_argument("scenarios", nargs="*", default=None)
    args = ap.parse_args(argv)
    if args.tiny:
        args.scenarios = args.scenarios or TINY
        args.measure_profile = True
        args.profile = args.profile or str(Path(args.out) / "profile-tiny.json")
        Path(args.out).mkdir(parents=True, exist_ok=True)
    args.profile = args.profile or str(ROOT / "profiles" / "host-small-validation.json")
    args.scenarios = args.scenarios or [str(ROOT / "scenarios" / "validation")]

    import videos

    from atomsim.cli import main as atomsim
    with tempfile.TemporaryDirectory() as d:
        video = (videos.make_video(Path(d) / "my.mp4", seconds=25.0, width=320, height=240, fps=10) if args.tiny else
                 videos.make_video(Path(d) / "walk.mp4", seconds=65.0, width=320, height=240, fps=10, audio=True))
        t0 = time.perf_counter()
        argv = ["validate", *args.scenarios, "--profile", args.profile, "--videos", str(video), "--out", args.out,
                "--repeat", str(args.repeat)]
        if args.store:
            argv += ["--store", args.store]
        if args.measure_profile:
            argv += ["--measure-profile", "--profile-samples", str(args.profile_samples)]
        code = atomsim(argv)
        print(f"\nsuite wall time: {time.perf_counter() - t0:.0f} s")
    if args.tiny:
        keep_small(Path(args.out), args.pictures)
    return code


def keep_small(out: Path, pictures: str | None) -> None:
    """Move the scenarios' pictures to `pictures` (validation-tiny-NAME.png; dropped when None) and
    drop what is not json, md or yaml (the assembled videos, the runs' logs and their timelines)."""
    for png in out.glob("*.png"):
        if pictures:
            Path(pictures).mkdir(parents=True, exist_ok=True)
            png.replace(Path(pictures) / f"validation-tiny-{png.name}")
    for f in sorted(out.rglob("*"), reverse=True):
        if f.is_file() and f.suffix not in KEEP:
            f.unlink()
        elif f.is_dir() and not any(f.iterdir()):
            f.rmdir()


if __name__ == "__main__":
    sys.exit(main())
