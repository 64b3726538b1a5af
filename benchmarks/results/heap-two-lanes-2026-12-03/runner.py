import json, os, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/main")
from atomsim.run.limit import run_limited
SC = Path("/work/main/benchmarks/results/search-proof-per-op-heap-2026-12-03/scenarios") / (sys.argv[3] if len(sys.argv) > 3 else "1.4GB-best.yaml")
video = Path("/work/main/out/frag/video-25s.mp4")
if not video.exists():
    sys.path.insert(0, "/work/main/benchmarks")
    from atomsim.run.synthetic import make_video
    make_video(video, seconds=25.0, width=320, height=240, fps=10)
variant, n = sys.argv[1], int(sys.argv[2])
out = Path("/work/main/out/frag")
for i in range(n):
    d = Path(tempfile.mkdtemp(dir=out, prefix=f"run-{variant}-"))
    load = os.getloadavg()[0]
    r = run_limited(SC, [video], d, 1400 * 10**6, extra_args=["--no-progress"])
    rec = {"variant": variant, "sc": SC.name, "i": i, "outcome": r["outcome"], "e2e_s": r.get("e2e_s"), "peak_MB": (r.get("peak_bytes") or 0) / 1e6,
           "load": round(load, 2), "dir": str(d)}
    print(json.dumps(rec), flush=True)
    with open(out / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
