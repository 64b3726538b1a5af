"""Budget-aware policies (plan/budget.py): analytic cases with known optima, the exact optimum
against every rule and fixed policy on random small instances, and bad input.

The synthetic profiles here have no activations, inputs or load temporaries, so the planner's
memory model is the simulator's exactly (baseline + resident weights), and a serial plan's e2e is
the sum of its loads and ops: the differences below are reload seconds, computed by hand.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from atomsim.errors import ConfigError
from atomsim.plan import make_plan
from atomsim.sim import simulate
from test_sim_helpers import GB, make_profile, make_scenario

MB = 10**6


def scenario(ram_gb, requests=2, policy="budget-lru", **changes):
    sc = make_scenario(task="assembly", clips=2, ram_gb=ram_gb, policy=policy, cores=8)
    return sc.with_changes(**{"workload.requests": [f"request {i}" for i in range(requests)], "workload.think_s": 0.0,
                              "variant": "none", **changes})


def profile(resident, warm, cold=None, files=None):
    p = make_profile(resident=resident, warm=warm, load=cold or {k: v * 4 for k, v in warm.items()})
    for key, m in p.modules.items():
        name = key.split("/")[0]
        m.file_bytes = (files or {}).get(name, 10 * MB)
    return p


def evicted(summary) -> list[str]:
    return [e["module"] for e in summary.get("evictions", [])]


def loads_of(summary, module) -> list[bool]:
    """Each load of `module`: warm?"""
    return [ld["warm"] for ld in summary["loads"] if ld["module"].startswith(module + "/")]


# ---- analytic cases
def test_two_modules_that_cannot_both_be_resident():
    """decoder (1 GB) and a 1.2 GB sentence encoder never fit together in 2 GB (baseline 0.1 GB):
    indexing needs the decoder gone, the script the sentence encoder. The rules free one module at
    a time, the oldest (or farthest, or cheapest per byte: here the video encoder, a tie) first, so
    they free the encoder too and reload it in the next request; the optimum sees that the
    encoder (0.5 GB) and the sentence encoder fit together and keeps it. Files of 10 MB stay
    cached: every reload is warm, and the differences are reload seconds."""
    prof = profile(resident={"video-encoder": GB // 2, "decoder": GB, "bert-decoder": GB // 4,
                             "sentence-encoder": 6 * GB // 5},
                   warm={"video-encoder": 0.25, "decoder": 0.5, "bert-decoder": 0.4, "sentence-encoder": 0.1})
    big = simulate(scenario(16, policy="reuse-serial"), prof).summary
    assert simulate(scenario(2, policy="reuse-serial"), prof).summary["oom"]
    s = {r: simulate(scenario(2, policy=f"budget-{r}"), prof).summary for r in ("lru", "cost", "belady", "optimal")}
    for rule, v in s.items():
        assert v["completed"] and not v["oom"] and v["peak_bytes"] <= 2 * GB, rule
        assert loads_of(v, "decoder") == [False, True, True], rule   # cold once, then warm reloads
        assert loads_of(v, "sentence-encoder") == [False, True], rule
    for rule in ("lru", "cost", "belady"):
        assert evicted(s[rule])[:3] == ["video-encoder", "decoder", "sentence-encoder"], rule
        assert loads_of(s[rule], "video-encoder") == [False, True]
        # reuse-serial on a large device loads each module once; + 2 decoder, 1 encoder, 1 sentence encoder reloads
        assert s[rule]["e2e_s"] == pytest.approx(big["e2e_s"] + 2 * 0.5 + 0.25 + 0.1, abs=1e-9), rule
    assert "video-encoder" not in evicted(s["optimal"]) and loads_of(s["optimal"], "video-encoder") == [False]
    assert s["optimal"]["e2e_s"] == pytest.approx(big["e2e_s"] + 2 * 0.5 + 0.1, abs=1e-9)


def cost_case(dec_file=10 * MB):
    """At the index phase one of video-encoder (0.5 GB, 5 s to reload) and decoder (1 GB, 0.5 s
    warm) must go. LRU (a tie: the first loaded) and Belady (the decoder is needed sooner) evict
    the encoder and reload it in the next request; the cost rule evicts the decoder, which the
    script reloads cheaply."""
    return profile(resident={"video-encoder": GB // 2, "decoder": GB, "bert-decoder": GB // 4,
                             "sentence-encoder": 6 * GB // 10},
                   warm={"video-encoder": 5.0, "decoder": 0.5, "bert-decoder": 0.4, "sentence-encoder": 0.1},
                   cold={"video-encoder": 6.0, "decoder": 12.0, "bert-decoder": 1.6, "sentence-encoder": 0.4},
                   files={"decoder": dec_file})


def test_a_reload_cost_that_makes_eviction_by_recency_wrong():
    prof = cost_case()
    s = {r: simulate(scenario(2, policy=f"budget-{r}"), prof).summary for r in ("lru", "belady", "cost", "optimal")}
    assert all(v["completed"] for v in s.values())
    assert evicted(s["lru"])[0] == evicted(s["belady"])[0] == "video-encoder"
    assert evicted(s["cost"])[0] == "decoder"
    # LRU loads the encoder twice and the decoder twice; cost: the encoder once, the decoder three times
    assert len(loads_of(s["lru"], "video-encoder")) == 2 and len(loads_of(s["cost"], "video-encoder")) == 1
    assert len(loads_of(s["cost"], "decoder")) == 3 and all(loads_of(s["cost"], "decoder")[1:])
    assert s["lru"]["e2e_s"] - s["cost"]["e2e_s"] == pytest.approx(5.0 - 0.5, abs=1e-9)
    # the optimum also knows the encoder is not needed after the second request's clips: it frees
    # the encoder there, not the decoder, and saves the script's decoder reload (0.5 s warm)
    assert s["optimal"]["e2e_s"] == pytest.approx(s["cost"]["e2e_s"] - 0.5, abs=1e-9)


def test_cold_or_warm_reload_flips_the_cost_rules_choice():
    """The same case with the decoder's file too large to stay in the page cache (1.5 GB, with at
    most 1.3 GB free): its reload is cold, 12 s for 1 GB, and the encoder's warm one, 5 s for
    0.5 GB, is cheaper per byte, so the cost rule now evicts the encoder."""
    warm = simulate(scenario(2, policy="budget-cost"), cost_case()).summary
    cold = simulate(scenario(2, policy="budget-cost"), cost_case(dec_file=1500 * MB)).summary
    assert evicted(warm)[0] == "decoder" and evicted(cold)[0] == "video-encoder"
    # and it was right: keeping the encoder instead (so the decoder goes) reloads the decoder cold
    keep = simulate(scenario(2, policy="budget-cost", **{"schedule.modules": {"video-encoder": "keep"}}),
                    cost_case(dec_file=1500 * MB)).summary
    assert evicted(keep)[0] == "decoder" and loads_of(keep, "decoder")[1] is False
    assert cold["e2e_s"] < keep["e2e_s"] - 1.0


def test_an_eviction_says_why():
    s = simulate(scenario(2, policy="budget-cost"), cost_case()).summary
    e = s["evictions"][0]
    assert e == {"step": e["step"], "module": "decoder", "evicted_by": "cost", "for": "sentence-encoder",
                 "freed_bytes": GB, "reload_s": 0.5}


def test_keep_and_reload_marks():
    prof = cost_case()
    keep = simulate(scenario(2, policy="budget-lru", **{"schedule.modules": {"video-encoder": "keep"}}), prof).summary
    assert "video-encoder" not in evicted(keep) and len(loads_of(keep, "video-encoder")) == 1
    plan = make_plan(scenario(2, policy="budget-lru", **{"schedule.modules": {"sentence-encoder": "reload"}}),
                     profile=prof)
    assert sum(1 for st in plan.steps if st.kind == "load" and st.instance == "sentence-encoder") == 2
    ids = [st.id for st in plan.steps]
    assert ids.index("free:sentence-encoder") < ids.index("script")   # freed right after its phase


def test_parallel_lanes_follow_reuse_parallel_when_everything_fits():
    prof = cost_case()
    rp = simulate(scenario(16, requests=1, policy="reuse-parallel"), prof).summary
    bp = simulate(scenario(16, requests=1, policy="budget-lru", **{"schedule.lanes": "parallel"}), prof).summary
    assert bp["completed"] and not evicted(bp)
    assert bp["e2e_s"] <= simulate(scenario(16, requests=1, policy="reuse-serial"), prof).summary["e2e_s"]
    assert bp["e2e_s"] == pytest.approx(rp["e2e_s"], rel=0.35)   # loads wait for each other here, not there


# ---- the exact optimum is never slower
sizes = st.sampled_from([GB // 10, GB // 4, GB // 2, 3 * GB // 4, GB])
secs = st.sampled_from([0.05, 0.3, 1.0, 2.5, 6.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(enc=sizes, dec=sizes, sent=sizes, w_enc=secs, w_dec=secs, w_sent=secs,
       ram=st.sampled_from([1.2, 1.6, 2.0, 2.5, 3.0]), requests=st.integers(1, 3))
def test_the_optimum_is_never_slower_than_a_rule_or_a_fixed_policy(enc, dec, sent, w_enc, w_dec, w_sent, ram,
                                                                   requests):
    prof = profile(resident={"video-encoder": enc, "decoder": dec, "bert-decoder": GB // 4, "sentence-encoder": sent},
                   warm={"video-encoder": w_enc, "decoder": w_dec, "bert-decoder": 0.1, "sentence-encoder": w_sent})
    e2e = {}
    for p in ("budget-lru", "budget-cost", "budget-belady", "budget-optimal", "reload", "reuse-serial"):
        s = simulate(scenario(ram, requests=requests, policy=p), prof).summary
        if not s["oom"]:
            e2e[p] = s["e2e_s"]
    if "budget-optimal" not in e2e:   # nothing fits: then no serial schedule does
        assert not e2e
        return
    assert all(e2e["budget-optimal"] <= v + 1e-9 for v in e2e.values()), e2e


# ---- bad input
def test_budget_policy_needs_a_profile():
    with pytest.raises(ConfigError, match="plans with a profile"):
        make_plan(scenario(2, policy="budget-cost"))


def test_unknown_module_in_schedule():
    with pytest.raises(ConfigError, match="schedule.modules.*nope"):
        make_plan(scenario(2, policy="budget-cost", **{"schedule.modules": {"nope": "keep"}}), profile=cost_case())


def test_bad_mark_is_refused():
    with pytest.raises(ConfigError, match="schedule"):
        scenario(2, **{"schedule.modules": {"decoder": "sometimes"}})


def test_budget_policies_on_a_users_pipeline(tmp_path_factory):
    """A user's pipeline (Hugging Face modules of its own, profiled here): the budget policies plan
    it like any other; with two requests and a budget that holds the captioner or the answerer but
    not both beside the encoder, they evict, and every budget schedule completes where reuse does not."""
    import shutil
    from pathlib import Path

    from atomsim.models.hf_make import make_checkpoint
    from atomsim.schema.profile import load_profile
    from atomsim.schema.scenario import load_scenario
    root = Path(__file__).resolve().parent.parent
    d = tmp_path_factory.mktemp("user")
    for f in ("caption-search.pipeline.yaml", "caption-search.yaml"):
        shutil.copy(root / "scenarios" / "user" / f, d / f)
    for name, kind in (("captioner", "vision2seq"), ("embedder", "text-encoder"), ("lm", "causal-lm")):
        make_checkpoint(kind, d / "ckpt" / name, size="tiny")   # the pipeline needs them to exist
    prof = load_profile(root / "profiles" / "host-user-caption-search-ram.json")
    sc = load_scenario(d / "caption-search.yaml").with_changes(**{"workload.requests": 2, "workload.clips": 2})
    big = simulate(sc.with_changes(**{"device.ram_bytes": 64 * GB}), prof, "reuse-serial").summary
    rules = ("budget-lru", "budget-cost", "budget-belady", "budget-optimal")
    ram = int(big["peak_bytes"] * 0.8)   # reuse-serial's whole set does not fit in this
    tight = sc.with_changes(**{"device.ram_bytes": ram})
    assert simulate(tight, prof, "reuse-serial").summary["oom"]
    for p in rules:
        s = simulate(tight, prof, p).summary
        assert s["completed"] and s["evictions"], p
    assert simulate(tight, prof, "budget-optimal").summary["e2e_s"] <= min(
        simulate(tight, prof, p).summary["e2e_s"] for p in rules) + 1e-9
