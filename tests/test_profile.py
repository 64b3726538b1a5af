"""Profiler: memory figures against known truth, activation growth, CLI, resume, bad input."""
from __future__ import annotations

import json
import os
import time

import pytest

from atomsim.cli import main
from atomsim.errors import ProfileError
from atomsim import pagecache
from atomsim.profile import measure
from atomsim.profile.summary import finish_partial, partial_path
from atomsim.profile.workers import Workers
from atomsim.schema.profile import load_profile, profile_from_mapping

MB = 1 << 20


@pytest.fixture(scope="module")
def workers():
    with Workers(env={"ATOMSIM_TEST_TRANSIENT_BYTES": str(64 * MB)}) as w:
        yield w


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import torch
    from safetensors.torch import save_file
    path = tmp_path_factory.mktemp("w") / "w.safetensors"
    g = torch.Generator().manual_seed(0)
    save_file({f"layer{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(12)}, str(path))
    return path  # 12 x 4 MiB = 48 MiB of fp32


def test_cache_evict_and_residency(weights_file):
    pagecache.touch([weights_file])
    frac = pagecache.resident_fraction([weights_file])
    if frac is None:
        pytest.skip("mincore unavailable")
    assert frac > 0.95
    ev = pagecache.evict_checked([weights_file])
    assert ev["before"] > 0.95
    assert ev["evicted"] is True and ev["after"] < 0.05


def test_resident_and_transient_known_truth(workers, weights_file):
    """W bytes of fp32 weights are retained within 10%; a 64 MiB allocation made and freed during
    load shows up in the transient range (the worker's ATOMSIM_TEST_TRANSIENT_BYTES hook)."""
    W = 12 * 4 * MB
    job = {"mode": "load", "target": {"kind": "safetensors", "path": str(weights_file)}, "touch": True}
    r = workers.run(dict(job, cold=True))
    assert abs(r["resident_used"] - W) <= 0.10 * W, r
    assert 0.9 * 64 * MB <= r["transient_hwm"] <= 64 * MB + W + 16 * MB, r
    if r["evict"]["evicted"]:
        assert r["evict"]["after"] < 0.05
    m = workers.run(dict(job, memray=True))
    if "transient_memray" in m:
        assert m["transient_memray"] >= 0.9 * 64 * MB


def test_activation_peak_grows_with_frames_and_size(workers, tiny_store):
    job = {"mode": "ops", "preset": "tiny", "model": "video-encoder", "quant": "fp32", "store": str(tiny_store),
           "threads": [1], "samples": 1, "warmups": 0}
    peaks = []
    for frames, size in ((2, 224), (8, 224), (8, 448)):
        r = workers.run(dict(job, ops={"encode": {"frames": frames, "frame_size": size}}))["ops"]["encode"]
        peaks.append(r["activation_peak_by_threads"]["1"])
        assert r["input_bytes"] == frames * 3 * size * size * 4
    assert peaks[0] < peaks[1] < peaks[2], peaks
    # the load's temporaries, taken in this (the runner's) state: the 64 MiB the test hook
    # allocates and frees inside the load (the module itself is a few MB)
    assert 0.9 * 64 * MB <= workers.run(dict(job, ops={"encode": {}}))["load_transient"] <= 64 * MB + 32 * MB
    # 4x the frames adds 1176 patch tokens, 4x the pixels 4704: the peak grows with the tokens
    # (on top of what a first call sets up once)
    assert peaks[2] - peaks[1] > 2 * (peaks[1] - peaks[0]), peaks


def test_cli_quick_profile_show_compare(tiny_store, tmp_path, capsys):
    out = tmp_path / "p.json"
    rc = main(["profile", "--preset", "tiny", "--quick", "--model", "decoder", "--no-corun",
               "--threads", "1", "--samples", "2", "--storage-mb", "8", "--store", str(tiny_store), "--out", str(out)])
    assert rc == 0   # (no wall-time bound: this machine's speed drifts, and CI shares it)
    assert not partial_path(out).exists()
    p = load_profile(out)
    assert set(p.modules) == {"decoder/fp32"}
    m = p.modules["decoder/fp32"]
    assert set(m.ops) == {"caption", "generate"}
    assert m.load.cold_s.n == 2 and m.ops["caption"].latency_s["1"].warmups
    assert m.load.cold_evicted in (True, None)
    assert m.load.transient_runner_bytes is not None and m.load.temporaries_bytes() == m.load.transient_runner_bytes
    assert p.baseline_rss_bytes > 50 * MB and p.storage_read_bytes_per_s > 0
    assert p.pipeline_ops_bytes["assemble"] > 0 and "pipeline_ops_bytes.assemble" in p.method   # x264's buffers
    assert "quick" in p.method["samples"] and p.device["cores"] >= 1
    assert p.method["command"] == f"atomsim profile --preset tiny --quick --model decoder --no-corun --threads 1 " \
                                  f"--samples 2 --storage-mb 8 --store {tiny_store} --out {out}"   # with profile_seconds
    capsys.readouterr()
    assert main(["profile", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "decoder/fp32:caption" in text and "cold load" in text
    assert main(["profile", "compare", str(out), str(out)]) == 0
    assert "1.000" in capsys.readouterr().out


def test_interrupt_keeps_partial_and_resumes(workers, tiny_store, tmp_path):
    out = tmp_path / "r.json"
    kw = dict(models=["decoder", "bert-decoder"], threads=[1], samples=1, quick=True, store=tiny_store,
              corun=False, out=out, storage_bytes=4 * MB, workers=workers)

    def stop_at_second(done, total, desc):   # loads of both done, the decoder's ops done
        if desc.startswith("bert-decoder/fp32 ops"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure("tiny", progress=stop_at_second, **kw)
    assert not out.exists()
    side = json.loads(partial_path(out).read_text())
    assert sorted(side["loads"]) == ["bert-decoder/fp32", "decoder/fp32"]
    assert len(side["rounds"]["decoder/fp32"]) == 1 and not side["rounds"].get("bert-decoder/fp32")
    other = tmp_path / "finished.json"   # finishing a partial that will not be resumed
    partial_path(other).write_text(partial_path(out).read_text())
    fin = finish_partial(other)
    assert list(load_profile(other).modules) == ["decoder/fp32"] and "1 of 2" in fin.method["incomplete"]
    seen = []
    p = measure("tiny", progress=lambda d, t, s: seen.append(s), **kw)
    assert not any(s.startswith("decoder/") for s in seen)   # resumed, not re-measured
    assert p.modules["decoder/fp32"].load.cold_s.samples == [r["seconds"] for r in side["loads"]["decoder/fp32"]["cold"]]
    assert p.modules["decoder/fp32"].ops["caption"].latency_s["1"].samples == \
        side["rounds"]["decoder/fp32"][0]["ops"]["caption"]["latency"]["1"]["samples"]
    assert out.exists() and not partial_path(out).exists()


def test_profile_in_parts_resumes_round_by_round(workers, tiny_store, tmp_path):
    """`rounds_now` takes a profile in parts (the validator puts its real runs between them):
    each part adds rounds of loads, ops and co-run to the side file; the last part finishes."""
    out = tmp_path / "parts.json"
    kw = dict(models=["video-encoder", "bert-decoder"], threads=[1], samples=2, quick=True, store=tiny_store,
              corun=True, out=out, storage_bytes=4 * MB, workers=workers, op_budget_s=0,
              shape={"frames": 2, "tokens": 3, "beam": 2})
    assert measure("tiny", rounds_now=1, **kw) is None
    assert not out.exists()
    side = json.loads(partial_path(out).read_text())
    assert [len(side["loads"][k]["cold"]) for k in sorted(side["loads"])] == [1, 1]
    assert [len(side["rounds"][k]) for k in sorted(side["rounds"])] == [1, 1]
    assert [len(v["alone"][0]) for v in side["corun_rounds"].values()] == [1]
    seen = []
    p = measure("tiny", rounds_now=2, progress=lambda d, t, s: seen.append(s), **kw)
    assert not any("round 1/" in s for s in seen)   # round 1 kept, not re-measured
    enc = p.modules["video-encoder/fp32"]
    assert enc.load.cold_s.n == 2 and enc.load.cold_s.samples[0] == side["loads"]["video-encoder/fp32"]["cold"][0]["seconds"]
    assert enc.ops["encode"].latency_s["1"].n == 2
    assert len(p.corun) == 1 and p.corun[0].alone_s[0]["n"] == 2 and p.corun[0].together_s[1]["n"] >= 2
    assert out.exists() and not partial_path(out).exists()
    with pytest.raises(Exception, match="output file"):
        measure("tiny", rounds_now=1, **dict(kw, out=None))


def test_corun_pairs_and_shared_threads():
    from atomsim.profile.measure import corun_pairs_of, shared_threads
    assert shared_threads(1, 1, 2) == (1, 1) and shared_threads(2, 2, 2) == (1, 1) and shared_threads(2, 2, 8) == (2, 2)
    assert shared_threads(4, 2, 2) == (1, 1) and shared_threads(3, 1, 2) == (2, 1)
    models = ["video-encoder", "decoder", "bert-decoder"]
    assert corun_pairs_of(models, ["torchao-int8", "fp32"], True, (1, 1)) == \
        [("fp32", "decoder", 1, 1), ("fp32", "bert-decoder", 1, 1)]
    asked = [["torch-dynamic-int8", "decoder", 2, 2], ["fp32", "decoder", 1, 1], ["int4", "decoder", 1, 1]]
    assert corun_pairs_of(models, ["fp32", "torch-dynamic-int8"], True, (1, 1), asked) == \
        [("torch-dynamic-int8", "decoder", 2, 2), ("fp32", "decoder", 1, 1)]
    assert corun_pairs_of(models, ["fp32"], True, (1, 1), []) == []   # asked for none
    assert corun_pairs_of(["decoder"], ["fp32"], True, (1, 1)) == [] and corun_pairs_of(models, ["fp32"], False, (1, 1)) == []


def test_bad_names_and_unwritable_output(tmp_path, capsys):
    assert main(["profile", "--preset", "tiny", "--model", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "valid: bert-decoder, decoder, sentence-encoder, video-encoder" in capsys.readouterr().err
    assert main(["profile", "--preset", "tiny", "--quant", "int3", "--out", str(tmp_path / "x.json")]) == 2
    assert "torchao-int8" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: cannot make an unwritable directory")
        t0 = time.time()
        assert main(["profile", "--preset", "tiny", "--out", str(ro / "p.json")]) == 2
        assert time.time() - t0 < 5
        assert "cannot write" in capsys.readouterr().err
    finally:
        os.chmod(ro, 0o700)


def test_profile_file_errors_name_the_field(tmp_path):
    good = {"version": 1, "source": "measured", "baseline_rss_bytes": 1, "modules": {}}
    profile_from_mapping(good, "p.json")
    with pytest.raises(ProfileError, match="'version'.*unknown profile version 7"):
        profile_from_mapping(dict(good, version=7), "p.json")
    bad = dict(good)
    del bad["baseline_rss_bytes"]
    with pytest.raises(ProfileError, match="baseline_rss_bytes"):
        profile_from_mapping(bad, "p.json")
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"source": "measured"}))
    with pytest.raises(ProfileError, match="'version'"):
        load_profile(f)


def corun_job(store, samples, a):
    """A co-run job of side `a` (model, op, shape) beside the tiny decoder's caption, 1 thread each."""
    model, op, shape = a
    return {"mode": "corun", "preset": "tiny", "store": str(store), "samples": samples,
            "a": {"model": model, "quant": "fp32", "op": op, "shape": shape, "threads": 1},
            "b": {"model": "decoder", "quant": "fp32", "op": "caption", "shape": {"beam": 2, "tokens": 4}, "threads": 1}}


def test_corun_job(workers, tiny_store):
    r = workers.run(corun_job(tiny_store, 2, ("video-encoder", "encode", {"frames": 2, "frame_size": 224})))
    assert len(r["alone"][0]) == 2 and len(r["together"][0]) >= 2 and len(r["together"][1]) >= 2


def test_sample_op_budget_stops_slow_ops_at_min_samples():
    from atomsim.profile.worker import sample_op
    calls = []

    def op(x):
        calls.append(x)
        time.sleep(0.02)

    warm, xs = sample_op(op, (1,), samples=8, warmups=2, min_samples=3, budget_s=0.05)
    assert len(xs) == 3                 # 3 x 20 ms >= 50 ms budget: stops at the minimum
    assert len(warm) == 1               # first warm-up over budget / samples: no second
    assert len(calls) == 4
    warm, xs = sample_op(op, (1,), samples=5, warmups=2, min_samples=3, budget_s=0)
    assert (len(warm), len(xs)) == (2, 5)   # no budget: every sample asked for
    warm, xs = sample_op(op, (1,), samples=5, warmups=1, min_samples=3, budget_s=10.0)
    assert len(xs) == 5                 # fast op under a large budget: all samples
    warm, xs = sample_op(op, (1,), samples=5, warmups=0, min_samples=3, budget_s=0.05)
    assert (len(warm), len(xs)) == (0, 3)   # slow op at a later thread count: no warm-up


def test_corun_job_interleaves_rounds(workers, tiny_store):
    r = workers.run(corun_job(tiny_store, 3, ("sentence-encoder", "embed", {"items": 2, "tokens": 4})))
    assert r["interleaved"] and [len(x) for x in r["alone"]] == [3, 3]
    # per round the slower op completes exactly one call together, the faster one or more
    assert min(len(x) for x in r["together"]) == 3 and max(len(x) for x in r["together"]) >= 3


def test_rounds_take_one_sample_each_until_the_count_or_the_budget():
    from atomsim.profile.summary import merge_rounds, ops_todo

    def rd(x, slow=False):
        return {"ops": {"encode": {"latency": {"1": {"samples": [x], "warmups": [x]}, "2": {"samples": [x / 2], "warmups": []}},
                                   "slow": slow, "activation_peak_by_threads": {"1": 7}}},
                "resident_after_load": {"resident": 1}, "resident_after_ops": {"resident": 2}, "free_s": 0.1}
    cfg = {"op_budget_s": 30.0, "min_samples": 3}
    ops = {"encode": {}}
    assert ops_todo([], ops, [1, 2], 5, cfg) == ({"encode": [1, 2]}, set())
    fast = [rd(1.0)] * 3
    assert ops_todo(fast, ops, [1, 2], 5, cfg)[0] == {"encode": [1, 2]}      # under budget: more rounds
    assert ops_todo([rd(1.0)] * 5, ops, [1, 2], 5, cfg)[0] == {"encode": []}  # the count reached
    slow = [rd(12.0, slow=True)] * 3                                           # 36 s >= 30 s at 1 thread
    assert ops_todo(slow, ops, [1, 2], 5, cfg) == ({"encode": [2]}, {"encode"})
    assert ops_todo(slow, ops, [1, 2], 5, dict(cfg, op_budget_s=0))[0] == {"encode": [1, 2]}
    merged = merge_rounds([rd(1.0), None, rd(2.0)])
    assert merged["ops"]["encode"]["latency"]["1"]["samples"] == [1.0, 2.0]
    assert merged["ops"]["encode"]["activation_peak_by_threads"] == {"1": 7} and merged["free_s"] == [0.1, 0.1]


def test_ops_job_loads_and_runs_in_a_lane_thread_as_the_runner_does(monkeypatch):
    """The runner runs every step in a lane thread (glibc then serves it from another arena, which
    changes the memory an op keeps): the profiler's load and op calls must not run in the main
    thread, and an error in the lane reaches the caller."""
    import threading

    from atomsim.profile import worker
    seen = []

    class Fake:
        def example_inputs(self, op, **shape):
            return (1,)

        def encode(self, x):
            seen.append(threading.current_thread() is threading.main_thread())

        def free(self):
            pass

    def load(job):
        seen.append(threading.current_thread() is threading.main_thread())
        return Fake()

    monkeypatch.setattr(worker, "load_target", load)
    monkeypatch.setattr(worker, "weight_files", lambda job: [])
    res = worker.job_ops({"ops": {"encode": {}}, "threads": [1], "samples": 2, "memory": True})
    assert len(res["ops"]["encode"]["latency"]["1"]["samples"]) == 2
    assert seen and not any(seen)                    # load, first call and samples: all off the main thread
    assert worker.in_lane(lambda a: a + 1, 1) == 2
    with pytest.raises(ZeroDivisionError):
        worker.in_lane(lambda: 1 / 0)


def test_ops_job_decodes_the_reference_video_in_a_thread_as_the_runners_video_lane(monkeypatch):
    """The streamed runner decodes clips in its video lane thread; decoded in the main thread
    instead, the first small fp32 encode grew by 138 MB against about 93 MB (docs/running.md)."""
    import threading

    from atomsim.profile import worker
    where = []
    monkeypatch.setattr(worker, "runner_heap", lambda video: where.append(threading.current_thread() is threading.main_thread()))
    monkeypatch.setattr(worker, "weight_files", lambda job: [])
    monkeypatch.setattr(worker, "_ops_in_lane", lambda job, files, mem: {"ops": {}})
    worker.job_ops({"ops": {}, "threads": [1], "samples": 1, "memory": True, "reference_video": "ref.mp4"})
    assert where == [False]


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs the anonymous/file split")
def test_op_memory_counts_anonymous_memory_not_the_file_pages_a_call_pages_in(tmp_path):
    """A call that pages in 64 MB of a file (as a first call pages in library code) and allocates
    16 MB: its peak and what it keeps are the anonymous part (the file pages are page cache that a
    RAM limit takes back; counted, the peak would be 80 MB and the kept 64 MB or more)."""
    import mmap

    from atomsim.profile import worker
    f = tmp_path / "lib.bin"
    f.write_bytes(os.urandom(1 << 20) * 64)
    held = []

    def call():
        with open(f, "rb") as fh:
            m = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
        sum(m[i] for i in range(0, len(m), 4096))          # page the whole file in
        held.append(m)                                        # stays mapped, as library code does
        buf = bytearray(16 << 20)                              # anonymous, freed at return
        buf[::4096] = b"\x01" * len(buf[::4096])
        return len(buf)
    peak, kept, method, _ = worker.op_memory(call, ())
    assert 14e6 < peak < 30e6, (peak, method)
    assert kept < 40e6, kept    # at most the 16 MB buffer, when the heap keeps it (not 64 MB of file pages)


def test_memory_figures_are_the_median_over_rounds():
    """Each round is a new process; one odd process (a heap laid out otherwise) must not set the
    figure: the median over the rounds that took memory, every round's peak kept."""
    from atomsim.profile.summary import merge_rounds

    def rnd(peak, kept, transient, free_s=0.1):
        return {"ops": {"encode": {"latency": {"1": {"samples": [1.0], "warmups": [2.0]}},
                                   "activation_peak_by_threads": {"1": peak, "2": peak - 5},
                                   "heap_retained_by_threads": {"1": kept, "2": kept}}},
                "resident_after_load": {"resident": 100, "anon": 90, "file": 10},
                "resident_after_ops": {"resident": 110 + kept, "anon": 100, "file": 10},
                "free_s": free_s, "kept_after_free": kept, "load_transient": transient}
    m = merge_rounds([rnd(90, 40, 30), rnd(154, 112, 70), rnd(80, 35, 28), None])
    op = m["ops"]["encode"]
    assert op["activation_peak_by_threads"] == {"1": 90, "2": 85}
    assert op["heap_retained_by_threads"] == {"1": 40, "2": 40}
    assert op["activation_peak_rounds"] == [90, 154, 80]
    assert (m["load_transient"], m["kept_after_free"], m["memory_rounds"]) == (30, 40, 3)
    assert m["resident_after_ops"]["resident"] == 150
    assert op["latency"]["1"]["samples"] == [1.0, 1.0, 1.0] and m["free_s"] == [0.1, 0.1, 0.1]
