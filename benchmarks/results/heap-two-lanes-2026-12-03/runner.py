"""The runs of this folder: `python runner.py VARIANT N` runs the 1.4 GB best of the search proof
N times under a 1.4 GB memory cgroup (as benchmarks/search_proof.py runs it) and appends a line a
run to out/frag/results.jsonl. The variants were set in the environment beforehand
(MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX; the trim-after-op variant was a patch, not kept)."""
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from atomsim.run.limit import run_limited  # noqa: E402

SC = ROOT / "benchmarks/results/search-proof-per-op-heap-2026-12-03/scenarios/1.4GB-best.yaml"
OUT = ROOT / "out/frag"
variant, n = sys.argv[1], int(sys.argv[2])
OUT.mkdir(parents=True, exist_ok=True)
video = OUT / "video-25s.mp4"
if not video.exists():
    from atomsim.run.synthetic import make_video
    make_video(video, seconds=25.0, width=320, height=240, fps=10)
for i in range(n):
    d = Path(tempfile.mkdtemp(dir=OUT, prefix=f"run-{variant}-"))
    load = os.getloadavg()[0]
    r = run_limited(SC, [video], d, 1400 * 10**6, extra_args=["--no-progress"])
    rec = {"variant": variant, "sc": SC.name, "i": i, "outcome": r["outcome"], "e2e_s": r.get("e2e_s"),
           "peak_MB": (r.get("peak_bytes") or 0) / 1e6, "load": round(load, 2), "dir": str(d)}
    print(json.dumps(rec), flush=True)
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
