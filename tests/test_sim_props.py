"""Simulator invariants, with hypothesis: memory never negative, ordering of policies when
everything fits, never under the lower bound, determinism to the byte."""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomsim.io import dumps_json
from atomsim.sim import simulate
from test_sim_helpers import make_profile, make_scenario

lat = st.floats(min_value=0.01, max_value=20.0, allow_nan=False, allow_infinity=False)
MODELS = ("video-encoder", "decoder", "bert-decoder", "sentence-encoder")


@st.composite
def cases(draw, corun=False):
    load = {m: draw(lat) for m in MODELS}
    warm = {m: load[m] * draw(st.floats(0.0, 1.0)) for m in MODELS}
    caption = draw(lat)
    two = draw(st.floats(0.3, 1.0))     # latency at 2 threads / at 1 thread
    kw = dict(encode=draw(lat), caption=caption,
              # the baseline's BERT captioner is never faster than the reuse decoder here (as in the paper's
              # tables); otherwise reuse-serial may rightly be slower than reload
              bert_caption=caption * draw(st.floats(1.0, 2.0)), embed=draw(lat), generate=draw(lat),
              load=load, warm=warm, act=draw(st.integers(0, 10**8)), inputs=draw(st.integers(0, 10**7)),
              transient=draw(st.integers(0, 10**8)), device=draw(st.sampled_from(["testdev", "other"])),
              encode_threads={1: 1.0, 2: two} if draw(st.booleans()) else None)
    if kw["encode_threads"]:
        kw["encode_threads"] = {t: kw["encode"] * f for t, f in kw["encode_threads"].items()}
    if corun:
        kw["corun"] = [{"a": "video-encoder/fp32:encode", "b": "decoder/fp32:caption",
                        "slowdown_a": draw(st.floats(1.0, 2.0)), "slowdown_b": draw(st.floats(1.0, 2.0))}]
    prof = make_profile(**kw)
    t = draw(st.integers(1, 2))
    sc = make_scenario(task=draw(st.sampled_from(["assembly", "retrieval", "summarization", "qa"])),
                       clips=draw(st.integers(1, 12)), cores=draw(st.integers(1, 8)),
                       threads={"main": t, "encoder": t, "decoder": t}, storage_mb_s=draw(st.floats(50, 4000)),
                       page_cache=draw(st.sampled_from(["cold", "warm"])), queue_size=draw(st.integers(1, 3)))
    return sc, prof


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-9


@SETTINGS
@given(cases(corun=True))
def test_memory_never_negative_and_never_under_the_bound(case):
    sc, prof = case
    for pol in ("reload", "reuse-serial", "reuse-parallel", "baseline-resident"):
        res = simulate(sc, prof, pol)
        assert all(v >= 0 for _, b in res.trace.memory for v in b.values())
        assert not res.summary["oom"]
        assert res.summary["e2e_s"] >= res.summary["lower_bound_s"] * (1 - EPS) - EPS, pol
        times = [t for t, _ in res.trace.memory]
        assert times == sorted(times)


@SETTINGS
@given(cases())
def test_reuse_serial_never_slower_than_reload_when_everything_fits(case):
    sc, prof = case
    # For retrieval, reload never loads the script LM but reuse loads the (bigger) Llama decoder to
    # caption: reuse-serial may rightly be slower there. For the other tasks reload loads a superset.
    if sc.workload.task == "retrieval":
        sc = sc.with_changes(**{"workload.task": "assembly"})
    reload = simulate(sc, prof, "reload").summary["e2e_s"]
    serial = simulate(sc, prof, "reuse-serial").summary["e2e_s"]
    assert serial <= reload * (1 + EPS) + EPS


@SETTINGS
@given(cases())
def test_reuse_parallel_never_slower_than_reuse_serial_without_corun(case):
    sc, prof = case
    serial = simulate(sc, prof, "reuse-serial").summary["e2e_s"]
    parallel = simulate(sc, prof, "reuse-parallel").summary["e2e_s"]
    assert parallel <= serial * (1 + EPS) + EPS


@settings(max_examples=20, deadline=None)
@given(cases(corun=True), st.sampled_from(["reload", "reuse-parallel"]))
def test_deterministic_to_the_byte(case, pol):
    sc, prof = case
    a, b = simulate(sc, prof, pol), simulate(sc, prof, pol)
    assert dumps_json(a.summary) == dumps_json(b.summary)
    assert dumps_json(a.trace.to_chrome()) == dumps_json(b.trace.to_chrome())
