"""Pins: the plans, simulated summaries and traces of every scenario in scenarios/ under every
policy, as sha256 of the JSON atomsim writes (sorted keys). Recorded before the pipelines became
data (issue 24); a refactor that changes any of them fails here.

    python tests/test_plan_pins.py --record    # only when a change is meant, and re-measured

A plan is pinned by the fields it had when the pins were recorded (`PINNED_STEP_FIELDS`): fields
added since (the wiring of a step's named inputs and output) are not part of the old contract.
Scenarios without a profile (the tiny examples) are simulated on the published Pixel 5a profile
with the paper preset and torchao-int8, what that profile has.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PINS = Path(__file__).resolve().parent / "fixtures" / "plan_pins.json"
POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")
# summary fields added since the pins were recorded: the old figures must not move for them
ADDED_SUMMARY_FIELDS = ("peak_high_bytes",)
PINNED_STEP_FIELDS = ("id", "kind", "stage", "lane", "instance", "op", "clip", "request", "deps", "threads", "args")
FALLBACK_PROFILE = ROOT / "profiles" / "paper-pixel_5a.json"


def _scenarios():
    """(case name, Scenario) for every scenario file, and for each task a multi-request variant."""
    from atomsim.schema.scenario import load_scenario
    out = []
    for d in ("paper", "validation", "examples"):
        for f in sorted((ROOT / "scenarios" / d).glob("*.yaml")):
            out.append((f"{d}/{f.stem}", load_scenario(f)))
    base = load_scenario(ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml")
    requests = {"retrieval": [["a dog", "a city"], ["night"]], "assembly": ["make a reel", "the cooking, short"],
                "summarization": ["one", "two words"], "qa": ["who is there?", "what is cooked?"]}
    for task, reqs in requests.items():
        sc = base.with_changes(**{"workload.task": task, "workload.requests": reqs, "workload.think_s": 1.5,
                                  "workload.clips": 4, "workload.queue_size": 1, "workload.top_k": 3})
        out.append((f"variant/{task}-2req-q1", sc.model_copy(update={"name": f"{task}-2req-q1"})))
    return out


def _digest(obj) -> str:
    from atomsim.io import dumps_json
    return hashlib.sha256(dumps_json(obj).encode()).hexdigest()


def _plan_dict(plan) -> dict:
    d = plan.to_dict()
    d["steps"] = [{k: s[k] for k in PINNED_STEP_FIELDS} for s in d["steps"]]
    return d


def _profile_for(sc):
    from atomsim.schema.profile import load_profile
    if sc.profile:
        return sc, load_profile(sc.profile)
    return (sc.with_changes(**{"models.preset": "paper", "models.quant": "torchao-int8"}),
            load_profile(FALLBACK_PROFILE))


def current() -> dict:
    from atomsim.plan import make_plan
    from atomsim.sim import simulate
    pins = {}
    for name, sc in _scenarios():
        sim_sc, profile = _profile_for(sc)
        for policy in POLICIES:
            res = simulate(sim_sc, profile, policy=policy)
            pins[f"{name}/{policy}"] = {
                "plan": _digest(_plan_dict(make_plan(sc, policy))),
                "summary": _digest({k: v for k, v in res.summary.items() if k not in ADDED_SUMMARY_FIELDS}),
                "trace": _digest(res.trace.to_chrome()),
            }
    return pins


@pytest.fixture(scope="module")
def measured():
    return current()


def test_every_pinned_case_is_still_made(measured):
    assert sorted(measured) == sorted(json.loads(PINS.read_text()))


@pytest.mark.parametrize("what", ["plan", "summary", "trace"])
def test_plans_summaries_and_traces_are_byte_identical(measured, what):
    pins = json.loads(PINS.read_text())
    moved = [case for case in pins if case in measured and measured[case][what] != pins[case][what]]
    assert not moved, f"{len(moved)} {what}s changed, first: {moved[:5]}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_plan_pins.py --record")
    from atomsim.io import atomic_write_json
    atomic_write_json(PINS, current())
    print(f"recorded {PINS}")
