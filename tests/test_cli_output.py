"""Output in a terminal and in a log (issue 28, item 4 and the smaller things of item 6): progress bars
only on a terminal, `--no-progress` on every long command, no carriage return in a redirected
stderr, the libraries' noise filtered unless --verbose, the out-of-memory breakdown on screen, valid
choices in the help, a hint for an argument-order mistake. Through `main([...])`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from atomsim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "scenarios" / "paper"


@pytest.fixture(scope="module")
def one_module_store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def test_models_build_and_profile_write_no_carriage_return_to_a_redirected_stderr(one_module_store, tmp_path, capfd,
                                                                                    monkeypatch):
    """stderr captured (a file, not a terminal) at the level of file descriptors, workers included."""
    monkeypatch.delenv("ATOMSIM_PROGRESS", raising=False)
    store = str(one_module_store)
    assert main(["models", "build", "--preset", "tiny", "--model", "video-encoder", "--quant", "fp32",
                 "--store", store]) == 0
    err = capfd.readouterr().err
    assert "\r" not in err, err[:300]
    assert main(["profile", "--preset", "tiny", "--model", "video-encoder", "--quant", "fp32", "--quick",
                 "--samples", "1", "--threads", "1", "--no-corun", "--storage-mb", "8", "--op-budget", "0",
                 "--store", store, "--out", str(tmp_path / "p.json")]) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err, captured.err[:300]
    assert "wrote" in captured.out


@pytest.mark.parametrize("argv", [
    ["models", "build", "--preset", "tiny"], ["profile", "--preset", "tiny", "--out", "p.json"],
    ["run", "s.yaml", "--videos", "v.mp4", "--out", "o"], ["sweep", "s.yaml", "--out", "o"],
    ["validate", "s.yaml", "--profile", "p.json", "--videos", "v.mp4", "--out", "o"],
    ["simulate", "s.yaml", "--out", "o"]])
def test_every_long_command_takes_no_progress_and_verbose(argv):
    args = build_parser().parse_args([*argv, "--no-progress", "--verbose"])
    assert args.no_progress and args.verbose


def test_a_long_simulation_draws_no_bar_into_a_log(tmp_path, capsys, monkeypatch):
    import atomsim.sim.cli as simcli
    monkeypatch.setattr(simcli, "PROGRESS_CLIPS", 3)   # a bar for this plan, were stderr a terminal
    monkeypatch.delenv("ATOMSIM_PROGRESS", raising=False)
    assert main(["simulate", str(PAPER / "assembly-pixel_5a.yaml"), "--policy", "reload", "--no-png",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "simulating" not in err and "\r" not in err
    monkeypatch.setenv("ATOMSIM_PROGRESS", "1")   # a log that asks for the bar gets it
    assert main(["simulate", str(PAPER / "assembly-pixel_5a.yaml"), "--policy", "reload", "--no-png",
                 "--out", str(tmp_path)]) == 0
    assert "simulating reload" in capsys.readouterr().err


NOISY_COMMAND = """
import sys
import atomsim.sim.cli as simcli

def noisy(args):   # what a paper-scale run met: torch's own deprecations, from its real calls
    import torch
    x = torch.randn(4)
    torch.quantize_per_tensor(x, 0.1, 0, torch.qint8)
    x.storage()
    return 0

simcli.cmd_simulate = noisy
from atomsim.cli import main
sys.exit(main(["simulate", "s.yaml", "--out", "o", *sys.argv[1:]]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_cli_filters_the_known_library_warnings_unless_verbose(tmp_path, verbose):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("ATOMSIM_VERBOSE", "PYTHONWARNINGS")}
    p = subprocess.run([sys.executable, "-c", NOISY_COMMAND, *(["--verbose"] if verbose else [])], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    for text in ("torch.quantize_per_tensor", "TypedStorage is deprecated"):
        assert (text in p.stderr) == verbose, p.stderr


def test_the_out_of_memory_result_prints_its_breakdown(tmp_path, capsys):
    rc = main(["simulate", str(PAPER / "assembly-pixel_5a-baseline-resident.yaml"), "--policy", "baseline-resident",
               "--no-png", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 3
    line = next(x for x in out.splitlines() if x.startswith("out of memory: baseline-resident"))
    for part in ("weights", "inputs", "activations", "load temporaries", "baseline", "RAM 5.500 GB"):
        assert part in line


def test_a_scenario_swallowed_by_videos_gets_a_hint(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["run", "--videos", "my.mp4", str(ROOT / "scenarios" / "examples" / "assembly-tiny.yaml"),
              "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "required: scenario" in err and "hint: --videos took every value after it" in err
    assert "give scenario before --videos" in err


@pytest.mark.parametrize("argv, names", [
    (["run", "--help"], ["reuse-parallel", "baseline-resident", "budget-optimal"]),
    (["models", "build", "--help"], ["torch-dynamic-int8", "executorch-xnnpack", "sentence-encoder", "tiny"]),
    (["profile", "--help"], ["torchao-int8-weight-only", "bert-decoder"]),
    (["simulate", "--help"], ["budget-lru", "per-core"])])
def test_help_lists_the_valid_choices(argv, names, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())
    for name in names:
        assert name in text.replace("- ", "-"), name


def test_unstable_figures_come_with_advice(tmp_path, capsys, monkeypatch):
    import importlib
    measure = importlib.import_module("atomsim.profile.measure")
    fake = SimpleNamespace(warnings=["decoder/fp32 caption at 2 threads: stdev 14% of the mean"] * 10,
                           modules={}, profile_seconds=1.0)
    monkeypatch.setattr(measure, "measure", lambda *a, **kw: fake)
    assert main(["profile", "--preset", "tiny", "--quick", "--out", str(tmp_path / "p.json")]) == 0
    err = capsys.readouterr().err
    assert err.count("WARNING: unstable") == 10
    assert "10 figure(s) unstable" in err and "--samples 10" in err and "without --quick" in err
