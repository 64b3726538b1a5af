"""A user's own pipeline end to end (issue 24), through `main([...])`: tiny Hugging Face
checkpoints made here (a vision2seq captioner, a text encoder, a causal LM: random weights of
real architectures, their own tokenizers), profiled, simulated under the four policies, run on a
small real video and validated."""
from __future__ import annotations

import json

import pytest
import yaml

from atomsim.cli import main

pytestmark = pytest.mark.slow

PIPELINE = {
    "version": 1, "name": "caption-search", "source": "video",
    "modules": {"captioner": {"hf": "ckpt/captioner", "kind": "vision2seq"},
                "embedder": {"hf": "ckpt/embedder", "kind": "text-encoder"},
                "lm": {"hf": "ckpt/lm", "kind": "causal-lm"}},
    "stages": [
        {"name": "caption", "foreach": "clip", "module": "captioner", "op": "caption", "in": ["frames"],
         "out": "captions", "args": {"beam": 2, "tokens": 6}},
        {"name": "embed", "foreach": "clip", "module": "embedder", "op": "embed", "in": ["captions"], "out": "vectors"},
        {"name": "query", "foreach": "request", "module": "embedder", "op": "embed", "in": ["queries"], "out": "q"},
        {"name": "rank", "foreach": "request", "op": "rank", "in": ["q", "vectors"], "out": "ranking",
         "args": {"top_k": 2}},
        {"name": "answer", "foreach": "request", "module": "lm", "op": "generate", "in": ["prompt", "captions", "ranking"],
         "out": "answer", "args": {"tokens": 8, "instruction": "Answer from the clips."}},
    ],
}
POLICIES = ("reload", "reuse-serial", "reuse-parallel", "baseline-resident")


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    from atomsim.models.hf_make import make_checkpoint
    from atomsim.run.synthetic import make_video
    d = tmp_path_factory.mktemp("user")
    for name, kind in (("captioner", "vision2seq"), ("embedder", "text-encoder"), ("lm", "causal-lm")):
        make_checkpoint(kind, d / "ckpt" / name, size="tiny")
    (d / "pipe.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    sc = {"name": "mine", "device": "host", "pipeline": "pipe.yaml", "profile": "profile.json",
          "workload": {"prompt": "what happens?", "queries": ["a dog", "a car"], "frames_per_clip": 4,
                       "frame_size": 64, "clip_length_s": 4, "clip_stride_s": 4},
          "models": {"quant": "fp32"}, "policy": "reuse-parallel",
          "threads": {"main": 1, "captioner": 1, "embedder": 1}}
    (d / "sc.yaml").write_text(yaml.safe_dump(sc, sort_keys=False))
    make_video(d / "v.mp4", seconds=12.0)        # 3 clips of 4 s
    assert main(["profile", "--pipeline", str(d / "pipe.yaml"), "--quick", "--samples", "1", "--threads", "1",
                 "--op-budget", "0", "--storage-mb", "8", "--frames", "4", "--frame-size", "64",
                 "--store", str(d / "store"), "--out", str(d / "profile.json")]) == 0
    return d


def test_the_profile_measures_every_module_at_its_stages_shapes(user):
    prof = json.loads((user / "profile.json").read_text())
    assert set(prof["modules"]) == {"captioner/fp32", "embedder/fp32", "lm/fp32"}
    cap = prof["modules"]["captioner/fp32"]
    assert cap["ops"]["caption"]["shape"] == {"beam": 2, "tokens": 6, "frames": 4, "frame_size": 64}
    assert prof["modules"]["lm/fp32"]["ops"]["generate"]["shape"]["tokens"] == 8
    assert cap["params"] > 0 and cap["file_bytes"] > 0 and cap["load"]["cold_s"]["samples"]
    # each op's first call since the load, at the first thread count measured
    assert cap["ops"]["caption"]["first_call_threads"] == 1 and cap["ops"]["caption"]["first_call_s"]["samples"]
    # a clip's decoding, with the runner's decoder at the frames asked (no longer taken as free)
    assert prof["pipeline_ops_s"]["decode"] > 0 and "4 frames at 64 px" in prof["method"]["pipeline_ops_s.decode"]
    # the two per-clip stages on different modules run side by side under reuse-parallel: co-run
    assert [(c["a"], c["b"]) for c in prof["corun"]] == [("captioner/fp32:caption", "embedder/fp32:embed")]


def test_simulated_under_the_four_policies(user, capsys):
    out = user / "sim"
    args = ["simulate", str(user / "sc.yaml"), "--clips", "3", "--out", str(out), "--no-png"]
    assert main([*args, *[a for p in POLICIES for a in ("--policy", p)]]) == 0
    s = {p: json.loads((out / p / "summary.json").read_text()) for p in POLICIES}
    loads = {p: len(s[p]["loads"]) for p in POLICIES}
    assert loads["reload"] > loads["reuse-serial"] == 3
    assert s["reuse-parallel"]["e2e_s"] <= s["reuse-serial"]["e2e_s"]
    assert all(x["e2e_s"] >= x["lower_bound_s"] - 1e-9 for x in s.values())
    from atomsim.plan import make_plan
    from atomsim.schema.scenario import load_scenario
    plan = make_plan(load_scenario(user / "sc.yaml"), "reuse-parallel", clips=3)
    assert plan.step("embed:2").args == {"items": 1} and plan.step("query").args == {"items": 2}
    assert "mine: caption-search, 3 clips" in capsys.readouterr().out


def test_run_writes_each_requests_named_outputs(user):
    out = user / "run"
    assert main(["run", str(user / "sc.yaml"), "--videos", str(user / "v.mp4"), "--store", str(user / "store"),
                 "--out", str(out), "--no-progress"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["pipeline"] == "caption-search" and len(r["clips"]) == 3
    outs = r["outputs"]
    assert [c["clip"] for c in outs["captions"]] == [0, 1, 2] and all(isinstance(c["text"], str) for c in outs["captions"])
    assert [q["query"] for q in outs["ranking"]] == ["a dog", "a car"] and len(outs["ranking"][0]["ranked"]) == 3
    assert isinstance(outs["answer"]["text"], str) and len(outs["answer"]["clips"]) == 2
    assert outs["answer"]["clips"] == [c["clip"] for c in outs["ranking"][0]["ranked"][:2]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outcome"] == "completed" and summary["clips"] == 3
    assert {ld["module"] for ld in summary["loads"]} == {"captioner/fp32", "embedder/fp32", "lm/fp32"}


def test_validated_real_against_simulated(user):
    out = user / "val"
    assert main(["validate", str(user / "sc.yaml"), "--profile", str(user / "profile.json"), "--videos",
                 str(user / "v.mp4"), "--store", str(user / "store"), "--out", str(out)]) == 0
    rows = json.loads((out / "fidelity.json").read_text())["scenarios"]
    assert [(r["name"], r["task"], r["clips"]) for r in rows] == [("mine", "caption-search", 3)]
    assert rows[0]["simulated_peak_bytes"] > 0 and rows[0]["measured_peak_bytes"] > 0
    assert abs(rows[0]["peak_error_pct"]) < 25 and rows[0]["simulated_e2e_s"] > 0


def test_run_under_a_ram_limit_builds_and_evicts_the_users_modules(user):
    """A user's modules under a memory cgroup: built, evicted from the page cache first (cold
    loads, counted), and the run completes (the fit boundary: benchmarks/ram_fidelity.py --scenario)."""
    from atomsim.run.limit import CgroupError, MemoryCgroup
    try:
        MemoryCgroup.find_parent()
    except CgroupError as e:
        pytest.skip(f"no writable memory cgroup here: {e}")
    args = ["run", str(user / "sc.yaml"), "--videos", str(user / "v.mp4"), "--store", str(user / "store"),
            "--no-progress"]
    assert main([*args, "--out", str(user / "lim"), "--ram-limit", "3GB"]) == 0
    s = json.loads((user / "lim" / "summary.json").read_text())
    assert s["outcome"] == "completed" and [ld["cold"] for ld in s["loads"]] == [True, True, True]


def test_a_checkpoint_of_another_kind_is_named_in_one_line(user, tmp_path, capsys):
    mods = {k: {**v, "hf": str(user / v["hf"])} for k, v in PIPELINE["modules"].items()}
    wrong = {**PIPELINE, "modules": {**mods, "lm": {**mods["lm"], "kind": "seq2seq-lm"}}}
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(wrong, sort_keys=False))
    sc = yaml.safe_load((user / "sc.yaml").read_text())
    sc["pipeline"] = str(tmp_path / "pipe.yaml")
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump(sc))
    assert main(["run", str(tmp_path / "sc.yaml"), "--videos", str(user / "v.mp4"), "--store", str(user / "store"),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{tmp_path / 'pipe.yaml'}: module 'lm':" in err and "field 'kind'" in err
    assert "is not a seq2seq-lm architecture" in err


def test_a_stage_failing_on_real_data_is_one_line_naming_it(user, tmp_path, capsys):
    """Query vectors from another encoder than the candidates' (64 against 384 dimensions): the
    types fit, the rank cannot; the run ends in one line naming the pipeline's file and the stage."""
    from atomsim.models.hf_make import make_checkpoint
    make_checkpoint("text-encoder", tmp_path / "wide", size="small")
    mods = {k: {**v, "hf": str(user / v["hf"])} for k, v in PIPELINE["modules"].items()}
    mods["wide"] = {"hf": str(tmp_path / "wide"), "kind": "text-encoder"}
    stages = [dict(s, module="wide") if s["name"] == "query" else s for s in PIPELINE["stages"]]
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump({**PIPELINE, "modules": mods, "stages": stages}, sort_keys=False))
    sc = yaml.safe_load((user / "sc.yaml").read_text())
    (tmp_path / "sc.yaml").write_text(yaml.safe_dump({**sc, "pipeline": str(tmp_path / "pipe.yaml"), "profile": None}))
    assert main(["run", str(tmp_path / "sc.yaml"), "--videos", str(user / "v.mp4"), "--store", str(user / "store"),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{tmp_path / 'pipe.yaml'}: stage 'rank' (op rank) failed on request 0: RuntimeError" in err[0]
    assert not (tmp_path / "out" / "results.json").exists()
