"""Simulator: analytic golden cases, loading and page cache, memory and OOM, errors, torch-free import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import simpy

from atomsim.errors import ConfigError, ProfileError
from atomsim.schema.plan import ModuleRef, Plan, Step
from atomsim.sim import simulate
from atomsim.sim.cpu import Cpu, LatencyCurve
from atomsim.sim.engine import Engine
from test_sim_helpers import GB, QUANT, make_profile, make_scenario

ROOT = Path(__file__).resolve().parent.parent
CPU_LOADS = {"video-encoder": 1.0, "decoder": 2.0, "bert-decoder": 1.5, "sentence-encoder": 0.5}  # warm = cold


def test_import_and_simulate_without_torch():
    code = ("import sys; import atomsim.sim as s; assert 'torch' not in sys.modules, 'import'; "
            "from atomsim.schema.scenario import load_scenario; "
            f"sc = load_scenario({str(ROOT / 'scenarios/paper/assembly-pixel_5a.yaml')!r}); "
            "r = s.simulate(sc, None, 'reuse-parallel'); "
            "from atomsim.sim import cli; "
            "assert 'torch' not in sys.modules, 'simulate'; assert 'matplotlib' not in sys.modules, 'mpl'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ---- processor sharing

def run_jobs(cores, jobs):
    env = simpy.Environment()
    cpu = Cpu(env, cores)
    ends = {}

    def job(name, threads, curve, at):
        yield env.timeout(at)
        yield cpu.run(name, threads, curve)
        ends[name] = env.now

    for name, threads, curve, at in jobs:
        env.process(job(name, threads, curve, at))
    env.run()
    return ends


def test_three_one_second_jobs_on_two_cores_finish_at_1_5():
    ends = run_jobs(2, [(f"j{i}", 1, LatencyCurve({1: 1.0}), 0) for i in range(3)])
    assert ends == pytest.approx({"j0": 1.5, "j1": 1.5, "j2": 1.5})


def test_arrival_midway_reshares():
    # 2 jobs on 1 core: A alone for 0.5 s (half done), then both at half speed: A ends at 1.5, B at 2.0
    ends = run_jobs(1, [("a", 1, LatencyCurve({1: 1.0}), 0), ("b", 1, LatencyCurve({1: 1.0}), 0.5)])
    assert ends["a"] == pytest.approx(1.5) and ends["b"] == pytest.approx(2.0)


def test_speedup_curve_interpolates_and_shares():
    curve = LatencyCurve({1: 4.0, 2: 2.5, 4: 2.0})
    assert curve(2) == pytest.approx(2.5)
    assert curve(3) == pytest.approx(1 / 0.45)      # speed-up 0.4 -> 0.5, linear
    assert curve(8) == pytest.approx(2.0)           # flat above the largest count
    assert curve(0.5) == pytest.approx(8.0)         # linear below one thread
    ends = run_jobs(4, [("a", 4, curve, 0), ("b", 4, curve, 0)])   # each gets 2 threads
    assert ends["a"] == pytest.approx(2.5) and ends["b"] == pytest.approx(2.5)


# ---- plans executed

def test_reload_is_the_sum_of_its_loads_and_ops():
    prof = make_profile()
    res = simulate(make_scenario(policy="reload", clips=5), prof)
    n = 5
    loads = 1.0 + 1.5 + 0.5 + 2.0
    ops = n * (1.0 + 1.0) + 0.6 * n / 6 + 0.6 / 6 + 3.0
    assert res.summary["e2e_s"] == pytest.approx(loads + ops)
    assert res.summary["lower_bound_s"] == pytest.approx(loads + ops)
    assert res.summary["cold_loads"] == 4 and not res.summary["oom"]
    assert res.summary["stage_totals_s"]["load"] == pytest.approx(loads)


def test_reuse_parallel_pipelines_encode_and_caption():
    prof = make_profile(encode=2.0, caption=1.0, warm=CPU_LOADS)   # loads without reads: no storage sharing
    n = 5
    res = simulate(make_scenario(policy="reuse-parallel", clips=n), prof)
    tail = 1.0 + 0.6 * n / 6 + 0.6 / 6 + 3.0     # last caption, index, embed prompt, script
    assert res.summary["e2e_s"] == pytest.approx(1.0 + n * 2.0 + tail)   # load + n max(e, c) + tail
    serial = simulate(make_scenario(policy="reuse-serial", clips=n), prof)
    assert res.summary["e2e_s"] < serial.summary["e2e_s"]


def test_reuse_parallel_caption_bound():
    prof = make_profile(encode=1.0, caption=3.0, warm=CPU_LOADS)
    n = 6
    res = simulate(make_scenario(policy="reuse-parallel", clips=n), prof)
    # loads run one after another: the decoder's (2 s) follows the encoder's (1 s), then the
    # captions run back to back from 3 s (the encoder is far ahead, clip 0 encoded at 2 s)
    assert res.summary["e2e_s"] == pytest.approx(3.0 + n * 3.0 + 0.6 * n / 6 + 0.6 / 6 + 3.0)


def test_oversubscribed_cores_slow_the_parallel_lanes():
    prof = make_profile(encode=1.0, caption=1.0)
    res = simulate(make_scenario(policy="reuse-parallel", clips=4, cores=1), prof)
    fast = simulate(make_scenario(policy="reuse-parallel", clips=4, cores=8), prof)
    assert res.summary["e2e_s"] > fast.summary["e2e_s"]
    assert res.summary["e2e_s"] >= res.summary["lower_bound_s"] - 1e-9


def test_corun_slowdown_applies_while_both_run():
    corun = [{"a": "video-encoder/fp32:encode", "b": "decoder/fp32:caption", "slowdown_a": 1.5, "slowdown_b": 1.5}]
    base = simulate(make_scenario(policy="reuse-parallel"), make_profile())
    slow = simulate(make_scenario(policy="reuse-parallel"), make_profile(corun=corun))
    assert slow.summary["e2e_s"] > base.summary["e2e_s"]
    assert slow.summary["e2e_s"] >= slow.summary["lower_bound_s"]


def test_corun_figure_is_chosen_by_the_thread_counts():
    """A co-run measured at the lanes' thread counts wins over the pair's other figures: with 2
    cores and 1+1 threads no core sharing, so encode (1 s) beside caption (1 s) takes exactly 1 s
    x its slowdown."""
    both = [{"a": "video-encoder/fp32:encode", "b": "decoder/fp32:caption", "threads": [2, 2],
             "slowdown_a": 3.0, "slowdown_b": 3.0},
            {"a": "decoder/fp32:caption", "b": "video-encoder/fp32:encode", "threads": [1, 1],
             "slowdown_a": 1.25, "slowdown_b": 1.5}]
    prof = make_profile(corun=both)
    assert prof.corun_slowdown("video-encoder/fp32:encode", "decoder/fp32:caption", (1.0, 1.0)) == (1.5, 1.25)
    assert prof.corun_slowdown("video-encoder/fp32:encode", "decoder/fp32:caption", (2, 2)) == (3.0, 3.0)
    assert prof.corun_slowdown("video-encoder/fp32:encode", "decoder/fp32:caption", (4, 1)) == (3.0, 3.0)  # none: first
    assert prof.corun_slowdown("video-encoder/fp32:encode", "bert-decoder/fp32:caption") is None
    sc = make_scenario(policy="reuse-parallel", clips=4, cores=2, threads={"main": 1, "encoder": 1, "decoder": 1})
    res = simulate(sc, prof)
    spans = {sp.step: sp for sp in res.trace.spans}
    enc, cap = spans["encode:2"], spans["caption:1"]
    assert enc.start_s == pytest.approx(cap.start_s)
    assert cap.dur_s == pytest.approx(1.25)                     # wholly beside encode:2: the 1,1 figure
    assert enc.dur_s == pytest.approx(1.25 + (1 - 1.25 / 1.5))  # slowed while caption:1 ran, then alone


def test_generate_scales_by_tokens_when_profiled():
    prof = make_profile()
    prof.modules["decoder/fp32"].ops["generate"].shape = {"tokens": 32}
    sc = make_scenario(policy="reuse-serial")   # script_tokens 64 -> twice the profiled 3 s
    res = simulate(sc, prof)
    span = next(s for s in res.trace.spans if s.step == "script")
    assert span.dur_s == pytest.approx(6.0)


# ---- loading, storage, page cache

def test_cold_loads_share_storage_bandwidth():
    # policies load one module at a time; concurrent reads (a plan that overlaps loads) share the bandwidth
    import simpy

    from atomsim.sim.cpu import Storage
    env = simpy.Environment()
    storage = Storage(env)
    ends = {}

    def read(name, alone):
        yield storage.read(name, alone)
        ends[name] = env.now

    # 0.25 GB, 0.5 GB and 0.025 GB at 100 MB/s alone: 2.5 s, 5 s, 0.25 s
    for name, alone in (("encoder", 2.5), ("decoder", 5.0), ("minilm", 0.25)):
        env.process(read(name, alone))
    env.run()
    assert ends["minilm"] == pytest.approx(0.75)      # three share: 0.25 s of work at 1/3
    assert ends["encoder"] == pytest.approx(5.25)     # then two share
    assert ends["decoder"] == pytest.approx(7.75)     # then alone


def test_cold_loads_on_another_device_read_at_its_bandwidth():
    prof = make_profile()   # decoder file 0.5 GB, warm CPU work 0.5 s
    sc = make_scenario(policy="reload", storage_mb_s=100, device="other")
    res = simulate(sc, prof)
    loads = {s.step: s.dur_s for s in res.trace.spans if s.kind == "load"}
    assert loads["load:script-lm"] == pytest.approx(5.0 + 0.5)


def test_cold_loads_on_host_take_the_measured_cold_time():
    """`host` is the machine a measured profile comes from: its cold loads take the profile's
    cold_s (read = cold_s - warm_s), whatever storage figure the device catalog gives host."""
    prof = make_profile()   # decoder file 0.5 GB, warm CPU work 0.5 s
    cold = prof.modules[f"decoder/{QUANT}"].load.cold_s.median
    sc = make_scenario(policy="reload", storage_mb_s=100, device="host")
    loads = {s.step: s.dur_s for s in simulate(sc, prof).trace.spans if s.kind == "load"}
    assert loads["load:script-lm"] == pytest.approx(cold)
    prof.source = "published"   # not measured here: read at the device's bandwidth
    loads = {s.step: s.dur_s for s in simulate(sc, prof).trace.spans if s.kind == "load"}
    assert loads["load:script-lm"] == pytest.approx(5.0 + 0.5)


def test_warm_start_uses_warm_loads():
    res = simulate(make_scenario(policy="reload", page_cache="warm"), make_profile())
    assert res.summary["warm_loads"] == 4 and res.summary["cold_loads"] == 0
    loads = {s.step: s.dur_s for s in res.trace.spans if s.kind == "load"}
    assert loads["load:script-lm"] == pytest.approx(0.5)


def reload_twice_plan():
    steps = (
        Step("load:a", "load", "load", "main", "a"), Step("free:a", "free", "free", "main", "a"),
        Step("load:b", "load", "load", "main", "b"), Step("free:b", "free", "free", "main", "b"),
        Step("load:a#2", "load", "load", "main", "a"),
    )
    return Plan("retrieval", "custom", {"a": ModuleRef("video-encoder", "fp32"), "b": ModuleRef("decoder", "fp32")},
                steps, ("main",), 1).validate()


@pytest.mark.parametrize("ram_gb, warm", [(16, True), (1.2, False)])
def test_page_cache_keeps_files_only_while_free_ram_allows(ram_gb, warm):
    sc = make_scenario(ram_gb=ram_gb)
    eng = Engine(reload_twice_plan(), make_profile(), sc.device).run()
    assert [ld["warm"] for ld in eng.loads] == [False, False, warm]
    again = next(s for s in eng.trace.spans if s.step == "load:a#2")
    assert again.dur_s == pytest.approx(0.25 if warm else 1.0)


# ---- memory

def test_heap_kept_by_an_op_serves_its_own_next_call_and_adds_to_what_other_ops_keep():
    """Each op's kept heap apart: what encode's call kept (80 of its 100 MB) serves encode's next
    call, not caption's; caption's 50 MB come on top, and what both keep (80 + 30) stays until a
    load or free trims it. (With one heap serving any op, caption would run in encode's 80 MB:
    measured, encode and caption alternating on decoded clips keep more than either's peak,
    benchmarks/heap_interleave.py.)"""
    MB = 1_000_000
    prof = make_profile(act=100 * MB)
    ops = prof.modules[f"video-encoder/{QUANT}"].ops
    ops["encode"].heap_retained_bytes = 80 * MB
    for m in prof.modules.values():
        if "caption" in m.ops:
            m.ops["caption"].activation_peak_bytes = 50 * MB
            m.ops["caption"].heap_retained_bytes = 30 * MB
    res = simulate(make_scenario(policy="reload", clips=2), prof)
    spans = {sp.step: sp for sp in res.trace.spans}

    def acts_at(t):
        return [b for ts, b in res.trace.memory if ts <= t][-1]["activations"]

    def during(step):   # activations at the middle of the step
        return acts_at(spans[step].start_s + spans[step].dur_s / 2)

    assert during("encode:0") == 100 * MB
    assert during("caption:0") == 80 * MB + 50 * MB      # encode's kept heap does not serve it
    assert during("encode:1") == 100 * MB + 30 * MB      # its own 80 kept + 20 more, beside caption's 30
    assert during("caption:1") == 80 * MB + 50 * MB      # its own 30 kept + 20 more, beside encode's 80
    assert max(b["activations"] for _, b in res.trace.memory) == 130 * MB
    sp = spans[f"free:{next(s.instance for s in res.plan.steps if s.op == 'encode')}"]
    after = [b for ts, b in res.trace.memory if ts >= sp.start_s + sp.dur_s][0]
    assert after["activations"] == 0                         # the free's trim returned it
    # not measured (None): the op returns everything
    ops["encode"].heap_retained_bytes = None
    plain = simulate(make_scenario(policy="reload", clips=2), prof)
    sp = {s.step: s for s in plain.trace.spans}["caption:0"]
    assert [b for ts, b in plain.trace.memory if ts <= sp.start_s + sp.dur_s / 2][-1]["activations"] == 50 * MB


def two_lane_plan(concurrent: bool) -> Plan:
    """encode once, caption once (each alone), then encode and caption again: on two lanes at once
    (`concurrent`), or caption after encode."""
    steps = (
        Step("load:a", "load", "load", "main", "a"), Step("load:b", "load", "load", "main", "b", deps=("load:a",)),
        Step("e1", "run", "encode", "x", "a", "encode", deps=("load:b",)),
        Step("c1", "run", "caption", "y", "b", "caption", deps=("e1",)),
        Step("e2", "run", "encode", "x", "a", "encode", deps=("c1",)),
        Step("c2", "run", "caption", "y", "b", "caption", deps=("c1",) if concurrent else ("e2",)),
    )
    return Plan("retrieval", "custom", {"a": ModuleRef("video-encoder", QUANT), "b": ModuleRef("bert-decoder", QUANT)},
                steps, ("main", "x", "y"), 1).validate()


@pytest.mark.parametrize("concurrent", [False, True])
def test_ops_on_two_lanes_at_once_may_take_each_others_kept_heap(concurrent):
    """Pools as above (encode 100 MB, keeps 80; caption 50, keeps 30): the simulated peak takes each
    op's own pool back (150 MB with both running, 130 one after the other). Run at once on two
    lanes, either may find its pool taken by the other (one heap: which happens depends on how their
    calls interleave): the top of the range adds both pools (80 + 30 MB); one after the other, none."""
    MB = 1_000_000
    prof = make_profile(act=100 * MB)
    prof.modules[f"video-encoder/{QUANT}"].ops["encode"].heap_retained_bytes = 80 * MB
    cap = prof.modules[f"bert-decoder/{QUANT}"].ops["caption"]
    cap.activation_peak_bytes, cap.heap_retained_bytes = 50 * MB, 30 * MB
    eng = Engine(two_lane_plan(concurrent), prof, make_scenario().device).run()
    base = eng.mem.by["baseline"] + (GB // 2 + GB // 4)   # baseline and both modules' weights
    peak = max(sum(b.values()) for _, b in eng.trace.memory)
    if concurrent:
        assert peak == base + 150 * MB
        assert eng.mem.peak_high == base + 150 * MB + 80 * MB + 30 * MB
    else:
        assert peak == base + 130 * MB
        assert eng.mem.peak_high == peak


def test_an_op_whose_profiling_rounds_peaked_higher_raises_the_top_while_it_runs():
    """encode's rounds peaked at 100, 180 and 90 MB (100 the median the peak uses): one lane, no
    contention, the top of the range is the peak plus 80 MB, which the op holds only while it runs."""
    MB = 1_000_000
    prof = make_profile(act=100 * MB)
    prof.modules[f"video-encoder/{QUANT}"].ops["encode"].activation_peak_rounds = [100 * MB, 180 * MB, 90 * MB]
    eng = Engine(two_lane_plan(False), prof, make_scenario().device).run()
    peak = max(sum(b.values()) for _, b in eng.trace.memory)
    assert eng.mem.peak_high == peak + 80 * MB and eng.mem.contended == 0
    with pytest.raises(ValueError, match="activation_peak_rounds"):
        type(prof.modules[f"video-encoder/{QUANT}"].ops["encode"]).model_validate(
            {**prof.modules[f"video-encoder/{QUANT}"].ops["encode"].model_dump(), "activation_peak_rounds": [-1]})


def test_a_trim_returns_the_heap_contended_ops_grew_by():
    """After a load's trim, the top of the range is the peak again (nothing kept is left to take)."""
    MB = 1_000_000
    prof = make_profile(act=100 * MB)
    prof.modules[f"video-encoder/{QUANT}"].ops["encode"].heap_retained_bytes = 80 * MB
    plan = two_lane_plan(True)
    steps = plan.steps + (Step("load:c", "load", "load", "main", "c", deps=("e2", "c2")),)
    plan = Plan("retrieval", "custom", {**plan.instances, "c": ModuleRef("sentence-encoder", QUANT)},
                steps, plan.lanes, 1).validate()
    eng = Engine(plan, prof, make_scenario().device).run()
    assert eng.mem.contended == 0 and eng.contended == {}
    assert eng.mem.peak_high > max(sum(b.values()) for _, b in eng.trace.memory)


def test_clips_streamed_frames_within_queue_size():
    """decode:i waits for encode:i-q: at most queue_size (2) clips of frames are resident; a
    released clip's frames (kept by the allocator) serve the next decode, and a trim returns the rest."""
    MB = 1_000_000
    prof = make_profile(act=0, inputs=4 * MB)
    res = simulate(make_scenario(policy="reload", clips=5), prof)
    spans = {sp.step: sp for sp in res.trace.spans}

    def during(step):
        sp = spans[step]
        t = sp.start_s + sp.dur_s / 2
        return [b for ts, b in res.trace.memory if ts <= t][-1]

    assert during("encode:0")["inputs"] == 8 * MB                       # clips 0 and 1
    assert during("caption:0")["inputs"] == 8 * MB + 4 * MB             # clips 1, 2 + the caption op's input
    assert during("caption:0")["activations"] == 0                      # clip 0's freed frames hold clip 2's
    assert during("encode:4")["inputs"] == 4 * MB and during("encode:4")["activations"] == 4 * MB
    assert max(b["inputs"] for _, b in res.trace.memory) == 12 * MB     # never more than 2 clips + 1 input
    sp = spans[f"free:{next(s.instance for s in res.plan.steps if s.op == 'encode')}"]
    after = [b for ts, b in res.trace.memory if ts >= sp.start_s + sp.dur_s][0]
    assert after["activations"] == 0 and after["inputs"] == 0
    # frames do not grow with the clip count
    long = simulate(make_scenario(policy="reload", clips=50), prof)
    assert max(b["inputs"] for _, b in long.trace.memory) == 12 * MB


def test_memory_breakdown_and_peak():
    prof = make_profile(act=10_000_000, inputs=1_000_000, transient=50_000_000)
    res = simulate(make_scenario(policy="reuse-parallel"), prof)
    s = res.summary
    weights = GB // 2 + GB + GB // 20
    assert s["breakdown_bytes"]["baseline"] == 100_000_000
    # loads one at a time: the peak is MiniLM's load (its transient) while the encoder encodes clip
    # 1 and the decoder captions clip 0 (its input: 1 MB); the frames of clips 1 and 2 are inputs
    # (1 MB each: the encode op's input bytes, queue_size 2); clip 0's, released, served clip 2's decode
    assert s["peak_bytes"] == 100_000_000 + weights + 50_000_000 + 10_000_000 + 1_000_000 + 2 * 1_000_000
    assert all(v >= 0 for _, b in res.trace.memory for v in b.values())
    assert sum(res.trace.memory[-1][1].values()) == 100_000_000   # everything freed at the end


def test_out_of_memory_at_a_known_step():
    # reload: baseline 0.1 GB + encoder 0.5 GB = 0.6 GB; the BERT decoder's 0.25 GB arrive in 4
    # parts of 62.5 MB over its load's CPU time (cold: after the read): the first fits (0.6625 GB),
    # the second passes 0.7 GB, a quarter of the warm time after the read
    res = simulate(make_scenario(policy="reload", ram_gb=0.7), make_profile())
    s = res.summary
    assert s["oom"] is True and s["completed"] is False
    ev = s["oom_event"]
    assert ev["step"] == "load:caption-decoder"
    read_s, warm_s = 1.5 - 1.5 / 4, 1.5 / 4      # make_profile: cold 1.5 s, warm a quarter of it
    assert ev["t_s"] == pytest.approx(1.0 + read_s + warm_s / 4)
    assert ev["limit_bytes"] == 700_000_000
    assert ev["breakdown_bytes"]["weights"] == GB // 2 + 2 * (GB // 4 // 4)
    assert ev["breakdown_bytes"]["baseline"] == 100_000_000
    assert ev["total_bytes"] == 725_000_000


def test_paper_baseline_resident_is_oom_and_reuse_fits():
    from atomsim.schema.scenario import load_scenario
    sc = load_scenario(ROOT / "scenarios/paper/assembly-pixel_5a-baseline-resident.yaml")
    base = simulate(sc, None, "baseline-resident")
    assert base.summary["oom"] and base.summary["oom_event"]["step"] == "load:script-lm"
    for pol in ("reuse-serial", "reuse-parallel"):
        assert not simulate(sc, None, pol).summary["oom"]


# ---- errors

def test_profile_lacking_a_module_names_module_and_step():
    prof = make_profile()
    del prof.modules["bert-decoder/fp32"]
    with pytest.raises(ProfileError, match=r"bert-decoder/fp32") as e:
        simulate(make_scenario(policy="reload"), prof)
    assert "caption" in str(e.value) or "load:caption-decoder" in str(e.value)


def test_profile_lacking_an_op_names_op_and_module():
    prof = make_profile()
    del prof.modules["decoder/fp32"].ops["generate"]
    with pytest.raises(ProfileError, match=r"'generate'.*decoder/fp32"):
        simulate(make_scenario(policy="reuse-serial"), prof)


def test_unknown_policy_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown policy 'fast'.*reload.*reuse-parallel"):
        simulate(make_scenario(), make_profile(), "fast")


def test_missing_profile_is_named():
    with pytest.raises(ConfigError, match="profile"):
        simulate(make_scenario(), None)


def two_requests(ram_gb):
    sc = make_scenario(policy="reload", clips=2, ram_gb=ram_gb).with_changes(**{"workload.requests": 2,
                                                                                "workload.think_s": 5.0})
    return simulate(sc, make_profile())


def test_requests_page_cache_keeps_files_while_ram_allows():
    """reload reloads per request; between requests the page cache keeps the weight files (0.9 GB)
    when RAM allows: generous RAM, request 2 reads nothing; 1.2 GB (script stage: 1.1 GB of process
    memory, 0.1 GB free), the LRU cache has given every file up: request 2 reads them all again."""
    files = {"video-encoder/fp32": GB // 4, "bert-decoder/fp32": GB // 8, "sentence-encoder/fp32": GB // 40,
             "decoder/fp32": GB // 2}
    for res, warm_again in ((two_requests(16), True), (two_requests(1.2), False)):
        assert res.summary["completed"]
        first = [ld for ld in res.loads if ld["request"] == 0]
        second = [ld for ld in res.loads if ld["request"] == 1]
        assert [ld["module"] for ld in first] == [ld["module"] for ld in second] == list(files)
        assert all(not ld["warm"] and ld["read_bytes"] == files[ld["module"]] for ld in first)
        assert all(ld["warm"] == warm_again for ld in second)
        assert [ld["read_bytes"] for ld in second] == ([0] * 4 if warm_again else list(files.values()))
    waits = [sp for sp in two_requests(16).trace.spans if sp.kind == "wait"]
    assert len(waits) == 1 and waits[0].dur_s == pytest.approx(5.0)


def test_runtime_file_pages_are_not_charged_against_the_limit():
    """The limit charges process memory less the baseline's file pages (baseline_rss - baseline_anon)."""
    prof = make_profile()
    peak = simulate(make_scenario(policy="reload", clips=2), prof).summary["peak_bytes"]
    tight = make_scenario(policy="reload", clips=2).with_changes(**{"device.ram_bytes": peak - 20_000_000})
    assert not simulate(tight, prof).summary["completed"]
    prof.baseline_anon_bytes = 60_000_000            # 40 MB of the 100 MB baseline are library pages
    assert simulate(tight, prof).summary["completed"]
    over = tight.with_changes(**{"device.ram_bytes": peak - 41_000_000})
    res = simulate(over, prof)
    assert not res.summary["completed"] and res.summary["oom_event"]["charged_bytes"] == res.summary["oom_event"]["total_bytes"] - 40_000_000


def test_the_decoder_process_is_charged_against_the_limit_not_counted_in_the_peak():
    """The runner's decoder process (run/decoder.py) is charged by a RAM limit beside the
    simulated process: the profile's decoder_anon_bytes moves the fit by that much, and the
    simulated peak (the runner's own process, as it measures it) not at all."""
    prof = make_profile()
    sc = make_scenario(policy="reload", clips=2)
    peak = simulate(sc, prof).summary["peak_bytes"]
    fits = sc.with_changes(**{"device.ram_bytes": peak + 10_000_000})
    assert simulate(fits, prof).summary["completed"]
    prof.decoder_anon_bytes = 25_000_000
    res = simulate(fits, prof)
    assert not res.summary["completed"]
    ev = res.summary["oom_event"]
    assert ev["charged_bytes"] == ev["total_bytes"] + 25_000_000
    roomy = sc.with_changes(**{"device.ram_bytes": peak + 26_000_000})
    assert simulate(roomy, prof).summary["completed"] and simulate(roomy, prof).summary["peak_bytes"] == peak


def test_freed_modules_first_use_state_stays_in_the_baseline():
    """kept_after_free_bytes (measured per module, each in a fresh process): the baseline grows to
    the largest figure among the modules freed so far, not their sum."""
    prof = make_profile()
    prof.modules["video-encoder/fp32"].kept_after_free_bytes = 60_000_000
    prof.modules["bert-decoder/fp32"].kept_after_free_bytes = 50_000_000
    prof.modules["decoder/fp32"].kept_after_free_bytes = 70_000_000
    res = simulate(make_scenario(policy="reload", clips=2), prof)
    spans = {sp.step: sp for sp in res.trace.spans}
    during = lambda step: [b for t, b in res.trace.memory if t <= spans[step].start_s][-1]  # noqa: E731
    assert during("index")["baseline"] == 160_000_000        # max(60, 50) after the first two frees
    assert res.trace.memory[-1][1]["baseline"] == 170_000_000   # then the script LM's 70


def test_assembler_buffers_count_while_it_runs():
    """pipeline_ops_bytes.assemble: memory while the assemble step runs, none after; absent: none."""
    MB = 1_000_000
    prof = make_profile(act=0)
    prof.pipeline_ops_s["assemble"] = 1.0
    prof.pipeline_ops_bytes = {"assemble": 40 * MB}
    res = simulate(make_scenario(policy="reload", clips=2), prof)
    sp = {s.step: s for s in res.trace.spans}["assemble"]
    at = [b for ts, b in res.trace.memory if ts <= sp.start_s + sp.dur_s / 2][-1]
    assert at["activations"] == 40 * MB
    assert res.trace.memory[-1][1]["activations"] == 0
    prof.pipeline_ops_bytes = {}
    plain = simulate(make_scenario(policy="reload", clips=2), prof)
    assert max(b["activations"] for _, b in plain.trace.memory) == 0
