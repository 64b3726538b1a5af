"""The paper's baseline (issue 27): `policy: reload` with `variant: none` loads the pipeline's own
(reuse) modules, the Llama decoder for captions and for scripts, and loads and frees them per
stage and per request, as the baseline of the paper's Table 3 did; atomsim's `reload` (variant
`auto`) captions with the BERT decoder instead. On the tiny preset, plan level (no torch);
benchmarks/paper_scale.py's `reload-paper` is this scenario."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from atomsim.plan import make_plan
from atomsim.schema.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "scenarios" / "examples"


def baseline(task: str, requests: int):
    sc = load_scenario(TINY / f"{task}-tiny.yaml").with_changes(**{
        "variant": "none", "workload.requests": requests, "workload.think_s": 0.0})
    return make_plan(sc, "reload", clips=3)


def held(plan) -> list[tuple[str, str]]:
    """(run step, instance) of every run step whose module is not loaded when it runs, in plan order
    (the reload plan is serial: step order is run order)."""
    loaded, bad = set(), []
    for s in plan.steps:
        if s.kind == "load":
            loaded.add(s.instance)
        elif s.kind == "free":
            loaded.discard(s.instance)
        elif s.kind == "run" and s.instance and s.instance not in loaded:
            bad.append((s.id, s.instance))
    return bad


@pytest.mark.parametrize("task, stages, decoder_loads", [("assembly", ("caption", "script"), 2),
                                                          ("retrieval", ("caption",), 1)])
def test_the_paper_baseline_reloads_the_reuse_decoder_per_stage_and_per_request(task, stages, decoder_loads):
    requests = 3
    plan = baseline(task, requests)
    assert {n: ref.model for n, ref in plan.instances.items()} == {
        "video-encoder": "video-encoder", "decoder": "decoder", "sentence-encoder": "sentence-encoder"}
    runs = [s for s in plan.steps if s.kind == "run" and s.node in stages]
    assert runs and {s.instance for s in runs} == {"decoder"}          # every stage on the Llama decoder
    assert held(plan) == []                                              # each ran with its module loaded
    for r in range(requests):
        mine = [s for s in plan.steps if s.request == r]
        loads = [s for s in mine if s.kind == "load" and s.instance == "decoder"]
        frees = [s for s in mine if s.kind == "free" and s.instance == "decoder"]
        assert len(loads) == len(frees) == decoder_loads, (r, [s.id for s in loads])   # one a stage, a request
        assert all(sum(s.kind == "load" for s in mine if s.instance == m) == 1
                   for m in ("video-encoder", "sentence-encoder"))


def test_atomsim_reload_captions_with_the_bert_decoder_and_reuse_loads_once():
    sc = load_scenario(TINY / "assembly-tiny.yaml").with_changes(**{"workload.requests": 3, "workload.think_s": 0.0})
    auto = make_plan(sc, "reload", clips=3)
    assert auto.instances["caption-decoder"].model == "bert-decoder"
    assert {s.instance for s in auto.steps if s.node == "caption"} == {"caption-decoder"}
    reuse = make_plan(sc.with_changes(variant="none"), "reuse-parallel", clips=3)
    assert sum(s.kind == "load" and s.instance == "decoder" for s in reuse.steps) == 1
    assert sum(s.kind == "load" and s.instance == "decoder" for s in baseline("assembly", 3).steps) == 6


def test_paper_scale_runs_the_paper_baseline_as_reload_with_variant_none(tmp_path):
    spec = importlib.util.spec_from_file_location("paper_scale_report", ROOT / "benchmarks" / "paper_scale_report.py")
    psr = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(psr)
    a = SimpleNamespace(work=tmp_path, limit=6 * 10**9, profile=ROOT / "profiles" / "host-paper.json")
    atom, variant = psr.POLICIES["reload-paper"]
    sc = load_scenario(psr.scenario(a, "assembly", "torch-dynamic-int8", "reload-paper"))
    assert (atom, sc.variant, sc.models.preset) == ("reload", "none", "paper")
    plan = make_plan(sc, atom)
    assert set(plan.instances) == {"video-encoder", "decoder", "sentence-encoder"}
    assert sum(s.kind == "load" and s.instance == "decoder" for s in plan.steps) == 2
    plain = load_scenario(psr.scenario(a, "assembly", "torch-dynamic-int8", "reload"))
    assert make_plan(plain, "reload").instances["caption-decoder"].model == "bert-decoder"
