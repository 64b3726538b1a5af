"""Pipelines as data (issue 24): the pipeline file, its errors, and policies over any pipeline,
simulated (no torch). Real modules and runs of users' pipelines: tests/test_user_pipeline.py."""
from __future__ import annotations

import copy

import pytest
import yaml

from atomsim.cli import main
from atomsim.plan import make_plan
from atomsim.schema.pipeline import bundled_names, load_pipeline
from atomsim.schema.profile import Load, ModuleProfile, Op, Profile, Stat, save_profile
from atomsim.schema.scenario import load_scenario
from atomsim.sim import simulate

POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")

# a module serving a per-clip and a per-request stage (tagger), two per-clip stages on different
# modules (vision, tagger), a module-less rank, an LM answering
USER = {
    "version": 1, "name": "tag-and-answer", "source": "video",
    "modules": {"vision": {"builtin": "video-encoder"}, "tagger": {"builtin": "decoder"},
                "embedder": {"builtin": "sentence-encoder"}},
    "stages": [
        {"name": "see", "foreach": "clip", "module": "vision", "op": "encode", "in": ["frames"], "out": "features"},
        {"name": "tag", "foreach": "clip", "module": "tagger", "op": "caption", "in": ["features"], "out": "tags",
         "args": {"beam": 2, "tokens": 8}},
        {"name": "index", "foreach": "request", "module": "embedder", "op": "embed", "in": ["tags"], "out": "index"},
        {"name": "ask", "foreach": "request", "module": "embedder", "op": "embed", "in": ["prompt"], "out": "q"},
        {"name": "rank", "foreach": "request", "op": "rank", "in": ["q", "index"], "out": "ranking",
         "args": {"top_k": 2}},
        {"name": "answer", "foreach": "request", "module": "tagger", "op": "generate",
         "in": ["prompt", "tags", "ranking"], "out": "answer", "args": {"tokens": 10}},
    ],
}


def stat(x):
    return Stat.of([x, x, x])


def module(model, weights_mb, load_s, ops):
    return ModuleProfile(model=model, quant="fp32", file_bytes=weights_mb * 1_000_000,
                         resident_bytes=weights_mb * 1_000_000,
                         load=Load(cold_s=stat(load_s * 2), warm_s=stat(load_s), transient_bytes=(0, 0)),
                         ops={op: Op(latency_s={"1": stat(s), "2": stat(s * 0.8)}, activation_peak_bytes=10_000_000,
                                     input_bytes=1_000_000, items=items, shape={"tokens": 10} if op == "generate" else {})
                              for op, (s, items) in ops.items()})


def made_up_profile(path):
    mods = {"video-encoder/fp32": module("video-encoder", 300, 0.5, {"encode": (0.4, 1)}),
            "decoder/fp32": module("decoder", 900, 1.5, {"caption": (0.6, 1), "generate": (1.0, 1)}),
            "sentence-encoder/fp32": module("sentence-encoder", 90, 0.2, {"embed": (0.05, 5)})}
    save_profile(Profile(version=1, source="measured", preset="small", device={"name": "pixel_8a", "cpu_model": "made up"},
                         baseline_rss_bytes=300_000_000, modules=mods, pipeline_ops_s={"rank": 0.001}), path)


def write_scenario(tmp_path, pipeline=USER, **workload):
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    made_up_profile(tmp_path / "profile.json")
    sc = {"name": "user", "device": "pixel_8a", "pipeline": "pipe.yaml", "profile": "profile.json",
          "workload": {"clips": 6, "prompt": "which clip shows a dog?", **workload},
          "models": {"preset": "small", "quant": "fp32"}, "threads": {"main": 2, "vision": 1, "tagger": 1}}
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
    return tmp_path / "sc.yaml"


def test_the_paper_pipelines_are_bundled_with_their_baseline_variant():
    assert bundled_names() == ["assembly", "qa", "retrieval", "summarization"]
    p = load_pipeline("assembly")
    assert list(p.modules) == ["video-encoder", "decoder", "sentence-encoder"]
    base = p.with_variant("baseline")
    assert list(base.modules) == ["video-encoder", "caption-decoder", "script-lm", "sentence-encoder"]
    assert base.stage("caption").module == "caption-decoder" and base.stage("script").module == "script-lm"


def test_variant_none_reloads_the_reuse_modules(tmp_path):
    sc = load_scenario(write_scenario(tmp_path))
    paper = load_scenario("scenarios/paper/assembly-pixel_5a.yaml")
    assert set(make_plan(paper, "reload").instances) == {"video-encoder", "caption-decoder", "script-lm", "sentence-encoder"}
    plain = make_plan(paper.model_copy(update={"variant": "none"}), "reload")
    assert set(plain.instances) == {"video-encoder", "decoder", "sentence-encoder"}
    assert set(make_plan(sc, "reload").instances) == {"vision", "tagger", "embedder"}   # no variant: its own


def test_policies_over_a_user_pipeline(tmp_path):
    sc = load_scenario(write_scenario(tmp_path))
    plans = {p: make_plan(sc, p) for p in POLICIES}
    loads = {p: sum(s.kind == "load" for s in plan.steps) for p, plan in plans.items()}
    # reload: (vision, tagger) for the clips, embedder for index+ask, rank alone, tagger again
    assert loads["reload"] == 4 > loads["reuse-serial"] == 3
    par = plans["reuse-parallel"]
    assert par.lanes == ("main", "video", "vision", "tagger")
    lane = {s.id: s.lane for s in par.steps}
    assert lane["see:3"] == "vision" and lane["tag:3"] == "tagger" and lane["answer"] == "tagger"
    assert lane["index"] == lane["rank"] == "main"
    # bounded queue (queue_size 2): see:4 waits for tag:2; the answer waits for the ranking (cross-lane)
    assert "tag:2" in par.step("see:4").deps and "rank" in par.step("answer").deps
    assert par.step("answer").args == {"prompt_tokens": 16 + int(5 * 1.3) + 2 * 8, "tokens": 10}
    assert par.step("index").args == {"items": 6} and par.step("tag:0").args == {"beam": 2, "tokens": 8}
    assert par.step("ask").args == {"items": 1}
    assert {s.threads for s in par.steps if s.lane == "vision" and s.kind == "run"} == {1}
    # threads by lane, else by the module on it
    named = sc.model_copy(update={"threads": sc.threads.model_validate({"main": 1, "eyes": 2, "tagger": 2})})
    lanes = {**USER, "stages": [dict(s, lane="eyes") if s["name"] == "see" else s for s in USER["stages"]]}
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(lanes, sort_keys=False))
    from atomsim.schema.pipeline import _LOADED
    _LOADED.clear()
    p2 = make_plan(named, "reuse-parallel")
    assert p2.lanes == ("main", "video", "eyes", "tagger")
    assert p2.step("see:0").threads == 2 and p2.step("tag:0").threads == 2 and p2.step("index").threads == 1
    res = {p: simulate(sc, policy=p).summary for p in POLICIES}
    assert all(r["completed"] for r in res.values())
    assert res["reuse-parallel"]["e2e_s"] <= res["reuse-serial"]["e2e_s"] < res["reload"]["e2e_s"]


def test_simulate_command_on_a_user_pipeline(tmp_path, capsys):
    path = write_scenario(tmp_path)
    assert main(["simulate", str(path), "--out", str(tmp_path / "out"), "--no-png"]) == 0
    for p in ("reload", "reuse-serial", "reuse-parallel"):
        assert (tmp_path / "out" / p / "summary.json").exists()


def bad(mutate):
    p = copy.deepcopy(USER)
    mutate(p)
    return p


def stage(name):
    return lambda p: next(s for s in p["stages"] if s["name"] == name)


BAD = [
    ("unknown op for its kind", lambda p: stage("tag")(p).update(op="embed"), "stage 'tag': field 'op'"),
    ("unknown op", lambda p: stage("tag")(p).update(op="translate"), "stage 'tag': field 'op'"),
    ("nothing produces an input", lambda p: stage("index")(p).update({"in": ["labels"]}), "stage 'index': field 'in'"),
    ("a cycle", lambda p: stage("index")(p).update({"in": ["answer"]}), "stage 'index': field 'in'"),
    ("unknown module", lambda p: stage("see")(p).update(module="eyes"), "stage 'see': field 'module'"),
    ("module-less op with a module", lambda p: stage("rank")(p).update(module="embedder"), "stage 'rank': field 'module'"),
    ("per-request op per clip", lambda p: stage("answer")(p).update(foreach="clip"), "stage 'answer': field 'foreach'"),
    ("output made twice", lambda p: stage("ask")(p).update(out="index"), "stage 'ask': field 'out'"),
    ("per-clip after per-request", lambda p: p["stages"].append(
        {"name": "late", "foreach": "clip", "module": "vision", "op": "encode", "in": ["frames"], "out": "f2"}),
     "stage 'late': field 'foreach'"),
    ("missing checkpoint", lambda p: p["modules"].update(tagger={"hf": "no/such/dir", "kind": "causal-lm"}),
     "module 'tagger': field 'hf'"),
    ("hf without kind", lambda p: p["modules"].update(tagger={"hf": "."}), "module 'tagger': field 'kind'"),
    ("unknown kind", lambda p: p["modules"].update(tagger={"hf": ".", "kind": "speech"}), "module 'tagger': field 'kind'"),
    ("unknown builtin", lambda p: p["modules"].update(vision={"builtin": "resnet"}), "module 'vision': field 'builtin'"),
    ("unknown field", lambda p: stage("see")(p).update(inputs=["frames"]), "stages.0.inputs"),
    ("unknown version", lambda p: p.update(version=2), "field 'version'"),
]


@pytest.mark.parametrize("why,mutate,expect", BAD, ids=[b[0] for b in BAD])
def test_a_bad_pipeline_is_one_line_naming_file_stage_and_field(tmp_path, capsys, why, mutate, expect):
    path = write_scenario(tmp_path, bad(mutate))
    assert main(["simulate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "pipe.yaml") in err and expect in err, err
    assert not (tmp_path / "out").exists()


def test_the_lower_bound_takes_the_fastest_thread_count_of_a_curve_that_does_not_fall():
    """A small op measured slower on 2 threads than on 1 (seen: a tiny captioner, 0.027 s at 1
    thread, 0.076 s at 2): the bound takes 1 thread's, and the simulated time is never below it."""
    from atomsim.sim.cpu import LatencyCurve
    assert LatencyCurve({1: 0.03, 2: 0.08}).fastest(2) == pytest.approx(0.03)
    assert LatencyCurve({1: 1.0, 2: 0.6}).fastest(2) == pytest.approx(0.6)
    assert LatencyCurve({1: 1.0, 2: 0.6}).fastest(1) == pytest.approx(1.0)


def test_demo_prints_the_papers_comparison(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "assembly: reuse-parallel is 32.5% faster than reload" in out
    assert "retrieval: reuse-parallel is 33.1% faster than reload" in out


def test_executors_name_no_task_and_parse_no_step_id():
    """The executors know pipelines only through their stages (issue 24's grep, kept)."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "atomsim"
    tasks = re.compile(r"retrieval|assembly|summarization|\bqa\b")
    parsing = re.compile(r"(step|\.id)\S*\.(r?split|partition|count|startswith)\(|\.step\.count\(")
    found = []
    for pkg, rx in (("run", tasks), ("sim", tasks), ("profile", tasks), ("run", parsing), ("validate", parsing)):
        for f in sorted((root / pkg).glob("*.py")):
            found += [f"{pkg}/{f.name}:{i}" for i, line in enumerate(f.read_text().splitlines(), 1) if rx.search(line)]
    assert not found, found


def test_validate_measures_a_users_pipeline_with_the_co_run_of_its_lanes(tmp_path):
    from atomsim.errors import ConfigError
    from atomsim.validate.suite import profile_request
    sc = load_scenario(write_scenario(tmp_path))
    req = profile_request([sc, sc.model_copy(update={"name": "b", "policy": "reload"})])
    assert req["pipeline"].name == "tag-and-answer" and req["corun_pairs"] is None
    assert req["corun_threads"] == (1, 1) and req["threads"] == [1, 2]
    paper = load_scenario("scenarios/paper/assembly-pixel_5a.yaml")
    with pytest.raises(ConfigError, match="validate them apart"):
        profile_request([sc, paper.model_copy(update={"models": sc.models})])


def test_memory_report_of_a_users_pipeline(tmp_path, capsys):
    write_scenario(tmp_path)
    assert main(["report", "memory", "--pipeline", str(tmp_path / "pipe.yaml"), "--profile", str(tmp_path / "profile.json"),
                 "--devices", "pixel_5a", "pixel_8a", "--preset", "small", "--quant", "fp32", "--policies", "reload",
                 "reuse-parallel", "--out", str(tmp_path / "mem"), "--allow-device-mismatch"]) == 0
    assert "4/4 combinations simulated" in capsys.readouterr().out
    table = (tmp_path / "mem" / "memory.md").read_text()
    assert table.count("| reuse-parallel |") == 2 and table.count("| reload |") == 2


def test_the_first_call_after_each_load_pays_its_set_up(tmp_path):
    """A profile with the caption op's first call 1.0 s above its median: reuse-serial pays it once,
    reload once per request (each request loads the tagger again); without it, nothing changes."""
    from atomsim.schema.profile import load_profile
    sc = load_scenario(write_scenario(tmp_path, requests=2))
    plain = load_profile(tmp_path / "profile.json")
    cap = plain.modules["decoder/fp32"].ops["caption"]
    first = cap.model_copy(update={"first_call_s": Stat.of([1.6, 1.6, 1.6]), "first_call_threads": 1})
    mods = {**plain.modules, "decoder/fp32": plain.modules["decoder/fp32"].model_copy(
        update={"ops": {**plain.modules["decoder/fp32"].ops, "caption": first}})}
    with_first = plain.model_copy(update={"modules": mods})
    e2e = {(p, which): simulate(sc, prof, policy=p).summary["e2e_s"]
           for p in ("reload", "reuse-serial") for which, prof in (("plain", plain), ("first", with_first))}
    assert e2e[("reuse-serial", "first")] - e2e[("reuse-serial", "plain")] == pytest.approx(1.0)
    assert e2e[("reload", "first")] - e2e[("reload", "plain")] == pytest.approx(2.0)


def test_a_sweep_over_a_users_pipeline_and_its_lanes_threads(tmp_path, capsys):
    import csv
    write_scenario(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "mine", "base": "sc.yaml",
        "grid": {"workload.clips": [1, 4], "policy": ["reload", "reuse-parallel"], "threads.tagger": [1, 2]}}))
    assert main(["sweep", str(tmp_path / "study.yaml"), "--out", str(tmp_path / "sw")]) == 0
    rows = list(csv.DictReader((tmp_path / "sw" / "points.csv").open()))
    assert len(rows) == 8 and all(r["error"] == "" for r in rows)
    # two threads on the tagger's lane: its steps ask 2 and take 0.8x of one thread's time
    e2e = {(r["policy"], r["workload.clips"], r["threads.tagger"]): float(r["e2e_s"]) for r in rows}
    assert e2e[("reuse-parallel", "4", "2")] < e2e[("reuse-parallel", "4", "1")]


TYPED = [
    ("rank on texts", lambda p: stage("rank")(p).update({"in": ["q", "tags"]}), "stage 'rank': field 'in': 'tags' holds text"),
    ("embed of features", lambda p: stage("index")(p).update({"in": ["features"]}), "'features' holds features"),
    ("a caption of frames by a feature-captioner", lambda p: stage("tag")(p).update({"in": ["frames"]}),
     "'frames' holds frames; op 'caption' of a feature-captioner and causal-lm reads features"),
    ("generate from vectors", lambda p: stage("answer")(p).update({"in": ["prompt", "index"]}), "'index' holds vectors"),
    ("rank of one value", lambda p: stage("rank")(p).update({"in": ["q"]}), "rank reads two values"),
]


@pytest.mark.parametrize("why,mutate,expect", TYPED, ids=[t[0] for t in TYPED])
def test_an_input_of_the_wrong_type_is_named_before_any_work(tmp_path, capsys, why, mutate, expect):
    path = write_scenario(tmp_path, bad(mutate))
    assert main(["simulate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "pipe.yaml") in err and expect in err, err


def test_simulate_takes_policies_as_report_memory_does(tmp_path, capsys):
    path = write_scenario(tmp_path)
    assert main(["simulate", str(path), "--policies", "reload", "baseline-resident", "--policy", "reuse-serial",
                 "--out", str(tmp_path / "o"), "--no-png"]) == 0
    assert sorted(d.name for d in (tmp_path / "o").iterdir()) == ["baseline-resident", "reload", "reuse-serial"]
    # --policy takes one: the scenario after it stays the scenario
    assert main(["simulate", "--policy", "reuse-parallel", str(path), "--out", str(tmp_path / "p"), "--no-png"]) == 0
    from atomsim.cli import build_parser
    helptext = "".join(build_parser()._subparsers._group_actions[0].choices["simulate"].format_help().split())
    assert "reload,reuse-serial,reuse-parallel,baseline-resident" in helptext   # argparse wraps at hyphens
