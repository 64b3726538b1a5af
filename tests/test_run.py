"""Runner: real tiny modules on small PyAV-made videos, under each policy."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import videos as tv  # noqa: E402

from atomsim.errors import OutputError, VideoError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "scenarios" / "examples"
POLICIES = ("reload", "reuse-serial", "reuse-parallel")


@pytest.fixture(scope="session")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    v = tv.video_set(d)
    v["long"] = tv.make_video(d / "long.mkv", seconds=35.0, width=96, height=64, fps=6)   # 6 clips
    v["corrupt"] = tv.make_corrupt(d / "corrupt.mp4")
    v["text"] = tv.make_text(d / "notes.mov")
    v["truncated"] = tv.make_truncated(d / "truncated.mkv")
    v["truncated_mp4"] = tv.make_truncated_mp4(d / "truncated.mp4")
    return v


def scenario(task):
    from atomsim.schema.scenario import load_scenario
    return load_scenario(EXAMPLES / f"{task}-tiny.yaml")


# ---------------------------------------------------------------- video input

def test_read_clips_shapes_and_sizes(vids):
    from atomsim.run.video import read_clips
    short = read_clips(vids["short"], 10, 5, 6, 224)
    assert len(short.clips) == 1 and short.clips[0].end_s == pytest.approx(4.0, abs=0.2)
    assert (short.width, short.height) == (130, 98)
    portrait = read_clips(vids["portrait"], 10, 5, 6, 224)
    assert portrait.has_audio and portrait.height > portrait.width
    assert [(c.start_s, c.end_s) for c in portrait.clips] == [(0, 10), (5, 15)]
    for info in (short, portrait, read_clips(vids["webm"]), read_clips(vids["mpeg4"])):
        for c in info.clips:
            assert tuple(c.frames.shape) == (6, 3, 224, 224)
            assert -2.0 < float(c.frames.mean()) < 2.5
    small = read_clips(vids["mpeg4"], 10, 5, 4, 32)
    assert tuple(small.clips[0].frames.shape) == (4, 3, 32, 32)
    # frames differ over time (evenly spaced, not one frame repeated)
    f = small.clips[0].frames
    assert float((f[0] - f[-1]).abs().mean()) > 0.01


def test_frame_aspect_center_crop():
    import av
    import numpy as np
    from atomsim.run.video import frame_to_array
    img = np.zeros((50, 100, 3), dtype=np.uint8)
    img[:, 25:75] = 255                      # white centre square of a 2:1 frame
    out = frame_to_array(av.VideoFrame.from_ndarray(img, format="rgb24"), 40)
    assert out.shape == (40, 40, 3)
    assert out[5:35, 5:35].min() > 200     # the crop keeps the centre, not stretched


@pytest.mark.parametrize("name", ["corrupt", "text", "truncated", "truncated_mp4"])
def test_bad_video_names_file(vids, name):
    from atomsim.run.video import read_clips
    with pytest.raises(VideoError) as e:
        read_clips(vids[name])
    assert str(vids[name]) in str(e.value)


def test_missing_video(tmp_path):
    from atomsim.run.video import read_clips
    with pytest.raises(VideoError, match="no such file"):
        read_clips(tmp_path / "nope.mp4")


# ---------------------------------------------------------------- runs

def _run(task, vids_, out, store, policy, **kw):
    from atomsim.run import run_scenario
    return run_scenario(scenario(task), vids_, policy=policy, out_dir=out, store=store, progress=False, **kw)


@pytest.mark.parametrize("policy", POLICIES)
def test_retrieval(vids, tiny_store, tmp_path, policy):
    from atomsim.plan import make_plan
    r = _run("retrieval", [vids["short"], vids["portrait"], vids["corrupt"]], tmp_path, tiny_store, policy,
             queries=["a cat", "a beach"])
    res = json.loads((tmp_path / "results.json").read_text())
    assert [q["query"] for q in res["outputs"]["ranking"]] == ["a cat", "a beach"]
    for q in res["outputs"]["ranking"]:
        assert len(q["ranked"]) == 3
        scores = [c["score"] for c in q["ranked"]]
        assert scores == sorted(scores, reverse=True)
        assert all(c["text"] and set(c) >= {"video", "start", "end", "text", "score"} for c in q["ranked"])
    captions = {c["clip"]: c["text"] for c in res["outputs"]["captions"]}
    assert all(captions[c["clip"]] == c["text"] for q in res["outputs"]["ranking"] for c in q["ranked"])
    assert [s["video"] for s in res["skipped"]] == [str(vids["corrupt"])]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["source"] == "measured" and summary["policy"] == policy and summary["clips"] == 3
    assert summary["peak_bytes"] > 0 and sum(summary["breakdown_bytes"].values()) == summary["peak_bytes"]
    trace = json.loads((tmp_path / "trace.json").read_text())
    plan = make_plan(scenario("retrieval").with_changes(**{"workload.queries": ["a cat", "a beach"]}), policy, clips=3)
    names = [e["name"] for e in trace["traceEvents"] if e["ph"] == "X"]
    assert sorted(names) == sorted(s.id for s in plan.steps)
    mem = [e["ts"] for e in trace["traceEvents"] if e["ph"] == "C"]
    gaps = sorted(b - a for a, b in zip(mem, mem[1:]))
    # the median interval: 100 ms where VmHWM can be reset (it gives the peak), else >= 50 Hz (the
    # samples are the peak); a C call holding the GIL (load, gc) can delay single samples
    bound = 20_000 if "not permitted" in summary["peak_method"] else 120_000
    assert len(mem) >= 2 and gaps[len(gaps) // 2] <= bound
    assert r.summary["steps"] == len(plan.steps)


@pytest.mark.parametrize("policy", POLICIES)
def test_assembly_duration(vids, tiny_store, tmp_path, policy):
    from atomsim.run.assemble import decoded_duration
    r = _run("assembly", [vids["short"], vids["mpeg4"], vids["portrait"]], tmp_path, tiny_store, policy)
    out = tmp_path / "assembly.mp4"
    made = r.results["outputs"]["assembly"]
    assert out.exists() and made["path"] == str(out)
    chosen = made["chosen"]
    assert len(chosen) == 3 and made["order_source"] in ("ranking", "script")
    assert [c["clip"] for c in chosen] == [c["clip"] for c in r.results["outputs"]["ranking"][0]["ranked"][:3]]
    assert r.results["outputs"]["script"]["clips"] == [c["clip"] for c in chosen]
    dur, frames, fps = decoded_duration(out)
    expected = sum(c["end"] - c["start"] for c in chosen)
    assert abs(dur - expected) <= len(chosen) / fps + 1e-6
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temp files left


def test_summarization_and_qa(vids, tiny_store, tmp_path):
    r = _run("summarization", [vids["short"]], tmp_path / "s", tiny_store, "reuse-serial")
    assert isinstance(r.results["outputs"]["summary"]["text"], str) and r.results["outputs"]["summary"]["text"]
    r = _run("qa", [vids["short"]], tmp_path / "q", tiny_store, "reload", prompt="who is there?")
    assert r.results["prompt"] == "who is there?" and r.results["outputs"]["answer"]["text"]


def _busy(spans):
    return [(s.start_s, s.end_s) for s in spans]


def test_parallel_lanes_overlap(vids, tiny_store, tmp_path):
    # the lanes may run at the same time: shown by one of a few runs, as on a busy machine (other
    # tests beside it) the decode lane can be the bottleneck, and then each clip's encode and
    # caption follow each other with nothing to overlap
    for attempt in range(3):
        r = _run("retrieval", [vids["long"]], tmp_path / str(attempt), tiny_store, "reuse-parallel")
        enc = [s for s in r.trace.spans if s.lane == "encoder" and s.kind == "run"]
        dec = [s for s in r.trace.spans if s.lane == "decoder" and s.kind == "run"]
        assert len(enc) == 6 and len(dec) == 6
        overlap = sum(max(0.0, min(a1, b1) - max(a0, b0)) for a0, a1 in _busy(enc) for b0, b1 in _busy(dec))
        if overlap > 0:
            break
    assert overlap > 0, "encoder and decoder lanes never ran at the same time in 3 runs"
    # the bounded queue: encode:i starts after caption:i-q ended
    q = 2
    by = {s.step: s for s in r.trace.spans}
    for i in range(q, 6):
        assert by[f"encode:{i}"].start_s >= by[f"caption:{i - q}"].end_s - 1e-6


def test_reload_loads_and_frees_in_plan_order(vids, tiny_store, tmp_path):
    from atomsim.plan import make_plan
    r = _run("assembly", [vids["short"], vids["mpeg4"]], tmp_path, tiny_store, "reload")
    plan = make_plan(scenario("assembly"), "reload", clips=4)
    got = [s.step for s in sorted(r.trace.spans, key=lambda s: s.start_s) if s.lane == "main"]
    assert got == [s.id for s in plan.steps if s.lane == "main"]   # decodes run ahead on their own lane
    lf = [s.step for s in sorted(r.trace.spans, key=lambda s: s.start_s) if s.kind in ("load", "free")]
    assert lf == [s.id for s in plan.steps if s.kind in ("load", "free")]
    main = [sp for sp in r.trace.spans if sp.lane == "main"]
    for a, b in zip(main, main[1:]):   # one lane: no overlap
        assert b.start_s >= a.end_s - 1e-6


# ---------------------------------------------------------------- bad input, outputs

def test_all_videos_bad(vids, tiny_store, tmp_path):
    with pytest.raises(VideoError) as e:
        _run("retrieval", [vids["corrupt"], vids["truncated"]], tmp_path, tiny_store, "reuse-serial")
    assert str(vids["corrupt"]) in str(e.value) and str(vids["truncated"]) in str(e.value)
    assert not (tmp_path / "results.json").exists()


def test_unwritable_out_fails_before_work(vids, tiny_store, tmp_path, monkeypatch):
    import atomsim.run as run
    called = []
    monkeypatch.setattr(run, "read_videos", lambda *a, **k: called.append(1))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError):
        _run("retrieval", [vids["short"]], blocker / "out", tiny_store, "reuse-serial")
    assert not called


def test_interrupted_assembly_leaves_no_output(vids, tiny_store, tmp_path, monkeypatch):
    import atomsim.run.assemble as asm
    orig = asm._clip_frames

    def interrupted(*a, **k):
        for i, f in enumerate(orig(*a, **k)):
            if i == 5:
                raise KeyboardInterrupt
            yield f
    monkeypatch.setattr(asm, "_clip_frames", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run("assembly", [vids["short"]], tmp_path, tiny_store, "reuse-parallel")
    assert not (tmp_path / "assembly.mp4").exists() and not (tmp_path / "results.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".assembly")]


def test_cli(vids, tiny_store, tmp_path, capsys):
    from atomsim.cli import main
    out = tmp_path / "out"
    rc = main(["run", str(EXAMPLES / "retrieval-tiny.yaml"), "--videos", str(vids["short"]), str(vids["text"]),
               "--query", "a red car", "--store", str(tiny_store), "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "a red car" in printed and "skipped" in printed and str(vids["text"]) in printed
    for f in ("summary.json", "trace.json", "results.json", "timeline.png"):   # the command draws the timeline
        assert (out / f).exists()
    assert json.loads((out / "summary.json").read_text())["timeline"] == "timeline.png"
    rc = main(["run", str(EXAMPLES / "retrieval-tiny.yaml"), "--videos", str(vids["text"]),
               "--store", str(tiny_store), "--out", str(tmp_path / "bad"), "--no-progress"])
    assert rc != 0
    assert str(vids["text"]) in capsys.readouterr().err


def test_pipeline_starts_from_a_trimmed_heap(vids, tiny_store, tmp_path, monkeypatch):
    """The profile's baseline is the RSS of a trimmed heap after decoding: the runner trims the
    decoder's freed buffers before the memory monitor takes its baseline."""
    from atomsim import models
    from atomsim.run import memory as run_memory
    events = []
    trim, start = models.malloc_trim, run_memory.MemoryMonitor.start
    monkeypatch.setattr(models, "malloc_trim", lambda: (events.append("trim"), trim())[1])
    monkeypatch.setattr(run_memory.MemoryMonitor, "start", lambda self: (events.append("start"), start(self))[1])
    _run("retrieval", [vids["short"]], tmp_path, tiny_store, "reload", queries=["a cat"])
    assert "start" in events and "trim" in events[:events.index("start")]


def test_imports_a_load_needs_are_made_before_the_clock_starts(vids, tiny_store, tmp_path, monkeypatch):
    """models.preload (the imports the profiler's workers make before they time a load) runs in
    the runner's start-up, before the memory monitor and the clock start: a first load that
    imports holds the interpreter lock and the lanes beside it wait (tiny sentence-encoder: 0.21 s
    with the imports, 0.12 s after them)."""
    from atomsim import models
    from atomsim.run import memory as run_memory
    events = []
    preload, start = models.preload, run_memory.MemoryMonitor.start
    monkeypatch.setattr(models, "preload", lambda: (events.append("preload"), preload())[1])
    monkeypatch.setattr(run_memory.MemoryMonitor, "start", lambda self: (events.append("start"), start(self))[1])
    _run("retrieval", [vids["short"]], tmp_path, tiny_store, "reload", queries=["a cat"])
    assert events[:2] == ["preload", "start"]
