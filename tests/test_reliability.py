"""Issue 14: the ten defects and the weak spots, each through the command a user types
(`atomsim.cli.main([...])`), or through the library where the defect lives."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atomsim.cli import main
from atomsim.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_OOM, ConfigError

from test_report_fakes import write_profile

ROOT = Path(__file__).resolve().parent.parent
PAPER = ROOT / "scenarios" / "paper"
EXAMPLES = ROOT / "scenarios" / "examples"
SMALL_PROFILE = ROOT / "profiles" / "host-small.json"


def cli(argv) -> int:
    """main(argv), with argparse's refusals (SystemExit) turned into their exit code."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def scenario(tmp_path, text, name="s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


PAPER_SCENARIO = ("device: pixel_5a\nworkload: {task: assembly, clips: 3, top_k: 3}\n"
                  f"models: {{preset: paper, quant: torchao-int8}}\nprofile: {PAPER.parent.parent / 'profiles' / 'paper-pixel_5a.json'}\n")


# ---- defect 2: a profile of another preset
def test_simulate_refuses_a_profile_of_another_preset(tmp_path, capsys):
    args = ["simulate", EXAMPLES / "assembly-tiny.yaml", "--profile", SMALL_PROFILE, "--no-png", "--policy", "reload"]
    assert cli(args + ["--out", tmp_path / "o"]) == EXIT_ERROR
    line = error_line(capsys)
    assert str(SMALL_PROFILE) in line and "assembly-tiny.yaml" in line
    assert "preset small" in line and "preset tiny" in line
    assert not (tmp_path / "o").exists()
    assert cli(args + ["--out", tmp_path / "o", "--allow-profile-mismatch"]) == EXIT_OK


def test_simulate_refuses_a_profile_lacking_the_scenarios_backend(tmp_path, capsys):
    prof = write_profile(tmp_path / "p.json", quants=("fp32",))
    sc = scenario(tmp_path, PAPER_SCENARIO)
    assert cli(["simulate", sc, "--profile", prof, "--out", tmp_path / "o", "--no-png"]) == EXIT_ERROR
    line = error_line(capsys)
    assert str(prof) in line and "lacks" in line and "video-encoder/torchao-int8" in line


# ---- defect 3: the plan's size
def test_a_billion_clips_is_refused_at_once(tmp_path, capsys):
    sc = scenario(tmp_path, PAPER_SCENARIO.replace("clips: 3", "clips: 1000000000"))
    assert cli(["simulate", sc, "--out", tmp_path / "o"]) == EXIT_ERROR
    line = error_line(capsys)
    assert str(sc) in line and "workload.clips" in line and "100000" in line
    assert cli(["simulate", PAPER / "assembly-pixel_5a.yaml", "--clips", "1000000000", "--out", tmp_path / "o"]) == EXIT_ERROR
    assert "--clips" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_long_simulations_show_progress(tmp_path, capsys, monkeypatch):
    import atomsim.sim.cli as simcli
    monkeypatch.setattr(simcli, "PROGRESS_CLIPS", 3)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)   # a bar only on a terminal
    assert cli(["simulate", PAPER / "assembly-pixel_5a.yaml", "--policy", "reuse-parallel", "--no-png",
                "--out", tmp_path]) == EXIT_OK
    err = capsys.readouterr().err
    assert "simulating reuse-parallel (5 clips)" in err and "simulating reload" in err


# ---- defect 4: Ctrl-C during assembly
ASSEMBLE_IN_A_DYING_PROCESS = """
import sys, threading, time
import numpy as np
from pathlib import Path
from types import SimpleNamespace
import atomsim.run.assemble as asm
from atomsim.run.synthetic import make_video
out = Path(sys.argv[1])
video = make_video(out / "v.mp4", seconds=1.0, width=64, height=48, fps=10)
def slow(path, start, end, fps, width, height):
    while True:
        time.sleep(0.01)
        yield np.zeros((height, width, 3), dtype=np.uint8)
asm._clip_frames = slow
clip = SimpleNamespace(video=str(video), start_s=0.0, end_s=1.0)
threading.Thread(target=asm.assemble, args=([clip], out / "assembly.mp4"), daemon=True).start()
while not list(out.glob(".assembly.mp4.*")):
    time.sleep(0.01)
time.sleep(0.2)
sys.exit(0)   # as after a second Ctrl-C: the main thread ends while the lane thread encodes
"""


def test_assembly_cut_short_by_the_process_exit_leaves_no_temporary(tmp_path):
    r = subprocess.run([sys.executable, "-c", ASSEMBLE_IN_A_DYING_PROCESS, str(tmp_path)], timeout=60,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob(".assembly.mp4.*")) and not (tmp_path / "assembly.mp4").exists()


def test_a_later_assembly_removes_stale_temporaries(tmp_path):
    from types import SimpleNamespace

    from atomsim.run.assemble import assemble
    from atomsim.run.synthetic import make_video
    video = make_video(tmp_path / "v.mp4", seconds=1.0, width=64, height=48, fps=10)
    stale = tmp_path / ".assembly.mp4.k3j2l1.mp4"
    stale.write_bytes(b"\0" * 1000)
    assemble([SimpleNamespace(video=str(video), start_s=0.0, end_s=0.5)], tmp_path / "assembly.mp4")
    assert (tmp_path / "assembly.mp4").exists() and not stale.exists()


# ---- defect 5: --out DIR for a file
def test_profile_out_directory_fails_before_measuring(tmp_path, capsys, monkeypatch):
    measure = importlib.import_module("atomsim.profile.measure")   # atomsim.profile.measure is also a function
    monkeypatch.setattr(measure, "measure", lambda *a, **k: pytest.fail("measured before checking --out"))
    (tmp_path / "d").mkdir()
    assert cli(["profile", "--preset", "tiny", "--out", tmp_path / "d"]) == EXIT_ERROR
    assert "is a directory" in error_line(capsys)
    assert not list(tmp_path.glob("*.partial.json"))


def test_profile_project_out_directory(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    rc = cli(["profile", "project", "--from", SMALL_PROFILE, "--to", "pixel_5a", "--out", tmp_path / "d"])
    assert rc == EXIT_ERROR and "is a directory" in error_line(capsys)


# ---- defect 6: binary and non-UTF-8 files
@pytest.mark.parametrize("argv", [
    ["simulate", "{f}", "--out", "{o}"],
    ["sweep", "{f}", "--out", "{o}", "--workers", "1"],
    ["profile", "show", "{f}"],
    ["report", "memory", "--profile", "{f}", "--devices", "pixel_5a", "--out", "{o}"],
    ["simulate", PAPER / "assembly-pixel_5a.yaml", "--profile", "{f}", "--out", "{o}"],
])
def test_non_utf8_file_is_named(tmp_path, capsys, argv):
    text = (PAPER / "assembly-pixel_5a.yaml").read_bytes()
    bad = tmp_path / "bad.json" if "profile" in argv else tmp_path / "bad.yaml"
    bad.write_bytes(text[:40] + b"\xff" + text[40:])
    rc = cli([str(a).format(f=bad, o=tmp_path / "o") for a in argv])
    line = error_line(capsys)
    if argv[0] == "report":   # report memory lists what it could not simulate, then exits 2
        assert rc == EXIT_ERROR
        return
    assert rc == EXIT_ERROR and str(bad) in line and "not UTF-8" in line and "0xff" in line
    assert not (tmp_path / "o").exists()


# ---- defect 7 and the weak spot "--samples 0, --workers 0": counts checked by argparse
@pytest.mark.parametrize("option", ["--frames", "--samples", "--frame-size", "--beam", "--tokens", "--items"])
def test_profile_counts_checked_before_work(tmp_path, capsys, monkeypatch, option):
    measure = importlib.import_module("atomsim.profile.measure")   # atomsim.profile.measure is also a function
    monkeypatch.setattr(measure, "measure", lambda *a, **k: pytest.fail("measured with a bad count"))
    assert cli(["profile", "--preset", "tiny", option, "0", "--out", tmp_path / "p.json"]) == EXIT_ERROR
    assert f"argument {option}: must be at least 1, got 0" in error_line(capsys)


# ---- defect 8: a corrupt config.json in the model store
def test_corrupt_config_json_is_named_and_rebuilt(tiny_store, tmp_path):
    from atomsim import models
    from atomsim.errors import ModelStoreError
    store = tmp_path / "store"
    shutil.copytree(tiny_store / "tiny" / "decoder" / "fp32", store / "tiny" / "decoder" / "fp32")
    cfg = store / "tiny" / "decoder" / "fp32" / "config.json"
    cfg.write_text("{bad")
    with pytest.raises(ModelStoreError) as e:
        models.load("tiny", "decoder", "fp32", store=store)
    assert str(cfg) in str(e.value) and "atomsim models build --preset tiny --model decoder --quant fp32" in str(e.value)
    models.build("tiny", "decoder", "fp32", store=store)   # what the runner does first: rebuilds it
    json.loads(cfg.read_text())


# ---- defect 9 and --workers 0
@pytest.mark.parametrize("option,value", [("--chunk-size", "0"), ("--workers", "0"), ("--workers", "-2")])
def test_sweep_counts_checked(tmp_path, capsys, option, value):
    rc = cli(["sweep", ROOT / "scenarios" / "studies" / "clips-pixel_5a.yaml", "--out", tmp_path / "o", option, value])
    assert rc == EXIT_ERROR and f"argument {option}: must be at least 1" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_run_sweep_refuses_chunk_size_zero(tmp_path):
    with pytest.raises(ConfigError, match="--chunk-size: must be at least 1"):
        from atomsim.report.sweep import run_sweep
        run_sweep(ROOT / "scenarios" / "studies" / "clips-pixel_5a.yaml", tmp_path, chunk_size=0)


# ---- defect 10: an interrupted simulate never mixes two runs' files
def test_interrupted_simulate_keeps_each_policys_earlier_set(tmp_path, monkeypatch):
    import atomsim.report.timeline as timeline
    base = ["simulate", PAPER / "assembly-pixel_5a.yaml", "--policy", "reload", "--policy", "reuse-parallel",
            "--out", tmp_path]
    assert cli(base) == EXIT_OK
    before = {p: {f.name: f.read_bytes() for f in (tmp_path / p).iterdir()} for p in ("reload", "reuse-parallel")}

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(timeline, "plot_timeline", interrupted)   # Ctrl-C while drawing reload's timeline
    assert cli(base + ["--clips", "7"]) == EXIT_INTERRUPTED
    after = {p: {f.name: f.read_bytes() for f in (tmp_path / p).iterdir()} for p in ("reload", "reuse-parallel")}
    assert after == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["reload", "reuse-parallel"]


# ---- weak spots: exit codes
def test_sweep_with_failed_points_exits_2_and_says_why(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(f"base: {PAPER / 'assembly-pixel_5a.yaml'}\n"
                     "grid: {workload.clips: [2, 3], policy: [reload, reuse-parallel]}\n"
                     "profile: {by: policy, paths: {reload: " + str(ROOT / "profiles" / "paper-pixel_5a.json")
                     + ", reuse-parallel: missing.json}}\n")
    assert cli(["sweep", study, "--out", tmp_path / "o", "--workers", "1", "--no-progress"]) == EXIT_ERROR
    cap = capsys.readouterr()
    assert "4 points (0 resumed, 2 failed" in cap.out
    assert "failed 2x:" in cap.err and "missing.json" in cap.err
    assert (tmp_path / "o" / "points.csv").exists()


# ---- weak spots: silently accepted
@pytest.mark.parametrize("text,expected", [
    (PAPER_SCENARIO.replace("clips: 3", "clips: true"), "field 'workload.clips': expected a number, got a boolean"),
    (PAPER_SCENARIO + "policy: reload\npolicy: reuse-serial\n", "duplicate key 'policy' (first at line 5)"),
])
def test_silently_accepted_values_are_refused(tmp_path, capsys, text, expected):
    sc = scenario(tmp_path, text)
    assert cli(["simulate", sc, "--out", tmp_path / "o"]) == EXIT_ERROR
    line = error_line(capsys)
    assert str(sc) in line and expected in line


def test_out_empty_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["simulate", PAPER / "assembly-pixel_5a.yaml", "--out", ""]) == EXIT_ERROR
    assert "empty" in error_line(capsys) and not list(tmp_path.iterdir())


@pytest.mark.parametrize("text,field", [
    ("policy: reuse-everything\n", "field 'policy': unknown policy 'reuse-everything'"),
    ("device: {base: pixel_5a, ram_gb: lots}\n", "field 'device.ram_gb': expected a number of GB, got 'lots'"),
    ("models: {preset: huge}\n", "field 'models.preset': unknown preset 'huge'"),
    ("workload: {task: dance}\n", "field 'workload.task': unknown task 'dance'"),
])
def test_messages_name_the_field(tmp_path, capsys, text, field):
    base = {line.split(":")[0]: line for line in PAPER_SCENARIO.splitlines()}
    base[text.split(":")[0]] = text.strip()
    sc = scenario(tmp_path, "\n".join(base.values()) + "\n")
    assert cli(["simulate", sc, "--out", tmp_path / "o"]) == EXIT_ERROR
    line = error_line(capsys)
    assert line.startswith(f"atomsim: error: {sc}: ") and field in line


def test_profile_show_names_what_the_file_is(tmp_path, capsys):
    part = tmp_path / "p.json.partial.json"
    part.write_text(json.dumps({"version": 4, "config": {}, "whole": None, "modules": {}}))
    assert cli(["profile", "show", part]) == EXIT_ERROR
    line = error_line(capsys)
    assert str(part) in line and "a partial profile" in line and "resume" in line
    assert cli(["simulate", PAPER / "assembly-pixel_5a.yaml", "--policy", "reload", "--no-png",
                "--out", tmp_path / "o"]) == EXIT_OK
    for f, looks in (("summary.json", "a run or simulation summary"), ("trace.json", "a trace")):
        assert cli(["profile", "show", tmp_path / "o" / "reload" / f]) == EXIT_ERROR
        assert f"not a profile (no field 'modules'); it looks like {looks}" in error_line(capsys)


def test_out_in_proc_says_files_cannot_be_created(capsys):
    assert cli(["profile", "project", "--from", SMALL_PROFILE, "--to", "pixel_5a", "--out", "/proc/x.json"]) == EXIT_ERROR
    assert "cannot create files in output directory '/proc'" in error_line(capsys)


# ---- weak spots: missing context
def test_simulate_names_older_policy_folders(tmp_path, capsys):
    base = ["simulate", PAPER / "assembly-pixel_5a.yaml", "--no-png", "--out", tmp_path]
    assert cli(base + ["--policy", "reload", "--policy", "reuse-serial"]) == EXIT_OK
    capsys.readouterr()
    assert cli(base + ["--policy", "reload"]) == EXIT_OK
    assert "also holds earlier results of reuse-serial" in capsys.readouterr().err


def test_profile_says_it_resumes(tmp_path, capsys, monkeypatch):
    measure = importlib.import_module("atomsim.profile.measure")   # atomsim.profile.measure is also a function
    monkeypatch.setattr(measure, "measure", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    (tmp_path / "p.json.partial.json").write_text("{}")
    assert cli(["profile", "--preset", "tiny", "--out", tmp_path / "p.json"]) == EXIT_INTERRUPTED
    assert "resuming from" in capsys.readouterr().err


def test_one_torn_line_in_a_sweeps_partial_keeps_the_points_after_it(tmp_path):
    from atomsim.report.sweep import _read_partial
    p = tmp_path / "points.partial.jsonl"
    p.write_text('{"study": "fp"}\n{"index": 0, "e2e_s": 1}\n{"index": 1, "e2\n{"index": 2, "e2e_s": 3}\n')
    assert sorted(i for i, _ in _read_partial(p, "fp")) == [0, 2]


# ---- weak spots: noise
def test_torch_imports_print_no_noise():
    # the command's main installs the filters (atomsim.process.quiet_import_noise; `import atomsim` does not)
    code = "from atomsim.cli import main; main([]); import atomsim.models, torchao.quantization, atomsim.run"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Failed to load" not in r.stderr and "Enum subclass" not in r.stderr, r.stderr


def test_options_have_help():
    from atomsim.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    commands = [sub["sweep"], sub["report"]._subparsers._group_actions[0].choices["memory"],
                sub["models"]._subparsers._group_actions[0].choices["build"]]
    for cmd in commands:
        for action in cmd._actions:
            assert action.help, f"{cmd.prog}: {action.option_strings or action.dest} has no help"


def test_top_k_above_the_clip_count_is_said(tmp_path, capsys):
    sc = scenario(tmp_path, PAPER_SCENARIO.replace("top_k: 3", "top_k: 8"))
    assert cli(["simulate", sc, "--policy", "reload", "--no-png", "--out", tmp_path / "o"]) == EXIT_OK
    assert "top_k 8 is above the clip count 3: every clip is in the top k" in capsys.readouterr().err


def test_validate_on_a_directory_without_scenarios_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = cli(["validate", tmp_path / "empty", "--profile", SMALL_PROFILE, "--videos", tmp_path / "v.mp4",
              "--out", tmp_path / "o"])
    assert rc == EXIT_ERROR and "no scenario" in capsys.readouterr().err
    assert not (tmp_path / "o" / "fidelity.json").exists()
