"""`atomsim simulate` and `atomsim demo` through atomsim.cli.main([...])."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atomsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "scenarios" / "paper"


def test_simulate_writes_each_policy_and_prints_the_table(tmp_path, capsys):
    rc = main(["simulate", str(PAPER / "assembly-pixel_5a.yaml"), "--policy", "reload", "--policy", "reuse-parallel",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    for pol in ("reload", "reuse-parallel"):
        for f in ("summary.json", "trace.json", "timeline.png"):
            assert (tmp_path / pol / f).stat().st_size > 0
    s = json.loads((tmp_path / "reuse-parallel" / "summary.json").read_text())
    for k in ("policy", "e2e_s", "lower_bound_s", "peak_bytes", "oom", "breakdown_bytes"):
        assert k in s
    assert set(s["breakdown_bytes"]) == {"weights", "inputs", "activations", "load_temporaries", "baseline"}
    trace = json.loads((tmp_path / "reuse-parallel" / "trace.json").read_text())
    assert {e["ph"] for e in trace["traceEvents"]} >= {"M", "X", "C"}
    assert "reuse-parallel" in out and "lower bound" in out and "peak (GB)" in out


def test_simulate_is_byte_identical_twice(tmp_path):
    args = ["simulate", str(PAPER / "retrieval-pixel_8a.yaml"), "--policy", "reuse-parallel", "--no-png"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    for f in ("summary.json", "trace.json"):
        assert (tmp_path / "a/reuse-parallel" / f).read_bytes() == (tmp_path / "b/reuse-parallel" / f).read_bytes()


def test_simulate_oom_scenario(tmp_path, capsys):
    rc = main(["simulate", str(PAPER / "assembly-pixel_5a-baseline-resident.yaml"), "--policy", "baseline-resident",
               "--policy", "reuse-parallel", "--out", str(tmp_path), "--no-png"])
    cap = capsys.readouterr()
    out = cap.out
    assert rc == 3   # EXIT_OOM: the result includes out-of-memory
    assert "out of memory: baseline-resident" in cap.err
    assert "yes at" in out and "load:script-lm" in out
    s = json.loads((tmp_path / "baseline-resident" / "summary.json").read_text())
    assert s["oom"] and s["oom_event"]["step"] == "load:script-lm"


def test_demo_from_another_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "assembly" in out and "retrieval" in out and "reuse-parallel" in out
    for task in ("assembly", "retrieval"):
        assert (tmp_path / "atomsim-demo" / task / "timeline-compare.png").exists()
        assert (tmp_path / "atomsim-demo" / task / "reload" / "summary.json").exists()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """\
device: {{cores: {cores}, ram_gb: {ram}, storage_read_mb_s: 800}}
workload: {{task: {task}, clips: 3, clip_length_s: {clip}}}
models: {{preset: paper, quant: torchao-int8}}
profile: {profile}
"""


def scenario(tmp_path, cores=8, ram=6, task="assembly", clip=10, profile=None):
    prof = profile or (ROOT / "profiles" / "paper-pixel_5a.json")
    return write(tmp_path, "s.yaml", GOOD.format(cores=cores, ram=ram, task=task, clip=clip, profile=prof))


@pytest.mark.parametrize("kw, field", [({"cores": 0}, "device.cores"), ({"ram": 0}, "device.ram_bytes"),
                                       ({"ram": -1}, "device.ram_bytes"), ({"clip": 0}, "workload.clip_length_s")])
def test_bad_numbers_name_the_field(tmp_path, capsys, kw, field):
    rc = main(["simulate", str(scenario(tmp_path, **kw)), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert field in err and "s.yaml" in err


def test_unknown_task_lists_valid_ones(tmp_path, capsys):
    assert main(["simulate", str(scenario(tmp_path, task="dance")), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'dance'" in err and "assembly" in err and "retrieval" in err


def test_unknown_policy_lists_valid_ones(tmp_path, capsys):
    rc = main(["simulate", str(scenario(tmp_path)), "--policy", "fastest", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown policy 'fastest'" in err and "reuse-parallel" in err


def test_profile_lacking_module_names_it(tmp_path, capsys):
    data = json.loads((ROOT / "profiles" / "paper-pixel_5a.json").read_text())
    del data["modules"]["bert-decoder/torchao-int8"]
    prof = write(tmp_path, "p.json", json.dumps(data))
    rc = main(["simulate", str(scenario(tmp_path, profile=prof)), "--policy", "reload", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "bert-decoder/torchao-int8" in err


def test_bad_clips_and_missing_files(tmp_path, capsys):
    assert main(["simulate", str(scenario(tmp_path)), "--clips", "0", "--out", str(tmp_path / "o")]) == 2
    assert "--clips" in capsys.readouterr().err
    assert main(["simulate", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["simulate", str(scenario(tmp_path)), "--profile", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "none.json" in capsys.readouterr().err
