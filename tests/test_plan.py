"""Plans: each policy turns a workload into a valid DAG of load/run/free steps on lanes."""
from __future__ import annotations

import json

import pytest

from atomsim.errors import ConfigError
from atomsim.plan import POLICY_BUILDERS, make_plan
from atomsim.schema.names import FIXED_POLICIES as POLICIES, TASKS
from test_sim_helpers import make_scenario


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_and_task_makes_a_valid_plan(task, policy):
    plan = make_plan(make_scenario(task=task, clips=4), policy)
    plan.validate()
    json.dumps(plan.to_dict())
    kinds = [s.kind for s in plan.steps]
    assert kinds.count("load") == kinds.count("free") == len(plan.instances)
    assert sum(1 for s in plan.steps if s.op == "encode") == 4
    assert sum(1 for s in plan.steps if s.op == "caption") == 4
    assert ("sentence-encoder" in plan.instances) == (task != "summarization")
    assert plan.clips == 4 and plan.task == task and plan.policy == policy


def test_policies_are_the_names():
    assert set(POLICY_BUILDERS) == set(POLICIES)


def test_reload_loads_and_frees_around_stages():
    plan = make_plan(make_scenario(task="assembly", clips=2), "reload")
    ids = [s.id for s in plan.steps]
    assert plan.instances["caption-decoder"].model == "bert-decoder"
    assert plan.instances["script-lm"].model == "decoder"
    assert ids.index("free:caption-decoder") < ids.index("load:script-lm") < ids.index("script") < ids.index("free:script-lm")
    assert ids.index("load:sentence-encoder") < ids.index("index") < ids.index("free:sentence-encoder")
    assert plan.lanes == ("main", "video")


def test_reuse_parallel_lanes_and_bounded_queue():
    plan = make_plan(make_scenario(task="assembly", clips=5, queue_size=2), "reuse-parallel")
    assert set(plan.instances) == {"video-encoder", "decoder", "sentence-encoder"}
    assert plan.step("encode:3").lane == "encoder" and plan.step("caption:3").lane == "decoder"
    assert "caption:1" in plan.step("encode:3").deps       # room in the queue of 2
    assert plan.step("encode:1").deps == ("decode:1",)
    assert plan.step("decode:3").lane == "video" and plan.step("decode:3").deps == ("encode:1",)   # 2 clips of frames
    assert plan.step("script").lane == "decoder" and plan.step("script").instance == "decoder"
    assert plan.step("index").args["items"] == 5


def test_clips_override_and_errors():
    sc = make_scenario(clips=3)
    assert make_plan(sc, "reload", clips=7).clips == 7
    with pytest.raises(ConfigError, match="unknown policy 'x'; valid: .*reload"):
        make_plan(sc, "x")
    with pytest.raises(ConfigError, match="at least one clip"):
        make_plan(sc, "reload", clips=0)


def test_script_prompt_holds_top_k_captions():
    sc = make_scenario(task="assembly", clips=10)
    plan = make_plan(sc, "reuse-serial")
    s = plan.step("script")
    assert s.args["prompt_tokens"] > 5 * sc.workload.caption_tokens
    assert plan.step("assemble").args["items"] == 5


@pytest.mark.parametrize("policy", ["reload", "reuse-serial", "reuse-parallel", "baseline-resident"])
def test_requests_reload_per_request_reuse_once(policy):
    sc = make_scenario(task="assembly", clips=3).with_changes(**{"workload.requests": ["a reel", "the best bits", "x"],
                                                                 "workload.think_s": 2.0})
    plan = make_plan(sc, policy)
    loads = [s for s in plan.steps if s.kind == "load"]
    per_request = {r: sorted(s.instance for s in loads if s.request == r) for r in range(3)}
    if policy == "reload":
        assert all(per_request[r] == sorted(plan.instances) for r in range(3))
    else:
        assert per_request == {0: sorted(plan.instances), 1: [], 2: []}
    waits = [s for s in plan.steps if s.kind == "wait"]
    assert [w.id for w in waits] == ["r1/request", "r2/request"] and all(w.args["seconds"] == 2.0 for w in waits)
    # a request starts when the one before has ended
    ids = [s.id for s in plan.steps]
    assert waits[0].deps == (ids[ids.index("r1/request") - 1],) and ids[ids.index("r1/request") - 1].endswith("assemble")
    assert plan.step("r1/decode:0").deps == ("r1/request",)
    assert sum(1 for s in plan.steps if s.op == "encode") == 9
    # each request's prompt sizes its own script
    assert plan.step("r1/script").args["prompt_tokens"] > plan.step("r2/script").args["prompt_tokens"]


@pytest.mark.parametrize("field,value,match", [("requests", 0, "requests"), ("requests", [], "requests"),
                                               ("think_s", -1, "think_s"), ("requests", [["q"]], "requests")])
def test_request_fields_checked(field, value, match):
    with pytest.raises(ConfigError, match=match):
        make_scenario(task="assembly", clips=3).with_changes(**{f"workload.{field}": value})
