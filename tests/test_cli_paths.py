"""Issue 14: every path argument of every subcommand handed a directory, a binary file, an empty
file and a missing file, through `atomsim.cli.main([...])`.

Whatever it is given, a command exits 0, 2 or 3 without a traceback; an input file (scenario,
profile, study) that is not one is refused (2) in one line naming it; an output directory that is
a file, or an output file that is a directory, is refused before any work. The heavy work behind
an accepted input (measuring, building, running models) is replaced by `Accepted`: reaching it
means the command took the input."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from atomsim.cli import main
from atomsim.errors import EXIT_ERROR, EXIT_OK, EXIT_OOM

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
TINY = ROOT / "scenarios" / "examples" / "assembly-tiny.yaml"
PROFILE = ROOT / "profiles" / "paper-pixel_5a.json"
SMALL = ROOT / "profiles" / "host-small.json"
KINDS = ("directory", "binary", "empty", "missing")


class Accepted(Exception):
    """Raised in place of the heavy work: the command got past its checks."""


def _accepted(*a, **k):
    raise Accepted


# (case, argv with {x} for the path under test, {o} for a fresh output dir, {v} a video, {s} a study;
#  role: input (must be refused unless valid), out-dir, out-file, any (only the general rules))
MATRIX = [
    ("simulate SCENARIO", ["simulate", "{x}", "--no-png", "--out", "{o}"], "input"),
    ("simulate --profile", ["simulate", SCENARIO, "--profile", "{x}", "--no-png", "--out", "{o}"], "input"),
    ("simulate --out", ["simulate", SCENARIO, "--policy", "reload", "--no-png", "--out", "{x}"], "out-dir"),
    ("demo --out", ["demo", "--out", "{x}"], "out-dir"),
    ("models list --store", ["models", "list", "--preset", "tiny", "--store", "{x}"], "any"),
    ("models build --store", ["models", "build", "--preset", "tiny", "--model", "decoder", "--quant", "fp32",
                              "--store", "{x}"], "any"),
    ("profile --out", ["profile", "--preset", "tiny", "--out", "{x}"], "out-file"),
    ("profile --store", ["profile", "--preset", "tiny", "--store", "{x}", "--out", "{o}/p.json"], "any"),
    ("profile show FILE", ["profile", "show", "{x}"], "input"),
    ("profile compare A", ["profile", "compare", "{x}", PROFILE], "input"),
    ("profile compare B", ["profile", "compare", PROFILE, "{x}"], "input"),
    ("profile project --from", ["profile", "project", "--from", "{x}", "--to", "pixel_8a", "--out", "{o}/p.json"],
     "input"),
    ("profile project --out", ["profile", "project", "--from", SMALL, "--to", "pixel_8a", "--out", "{x}"], "out-file"),
    ("profile project --published-dir", ["profile", "project", "--from", SMALL, "--to", "pixel_8a", "--method", "ratio",
                                         "--published-dir", "{x}", "--out", "{o}/p.json"], "any"),
    ("run SCENARIO", ["run", "{x}", "--videos", "{v}", "--out", "{o}"], "input"),
    ("run --videos", ["run", TINY, "--videos", "{x}", "--out", "{o}"], "any"),
    ("run --out", ["run", TINY, "--videos", "{v}", "--out", "{x}"], "out-dir"),
    ("run --store", ["run", TINY, "--videos", "{v}", "--out", "{o}", "--store", "{x}"], "any"),
    # a directory of scenarios is valid input for validate (issue 13 decides what an empty one does)
    ("validate SCENARIO", ["validate", "{x}", "--profile", PROFILE, "--videos", "{v}", "--out", "{o}"], "any"),
    ("validate --profile", ["validate", TINY, "--profile", "{x}", "--videos", "{v}", "--out", "{o}"], "input"),
    ("validate --videos", ["validate", TINY, "--profile", PROFILE, "--videos", "{x}", "--out", "{o}"], "any"),
    ("validate --out", ["validate", TINY, "--profile", PROFILE, "--videos", "{v}", "--out", "{x}"], "out-dir"),
    ("validate --store", ["validate", TINY, "--profile", PROFILE, "--videos", "{v}", "--out", "{o}", "--store", "{x}"],
     "any"),
    ("report memory --profile", ["report", "memory", "--devices", "pixel_5a", "--profile", "{x}", "--out", "{o}"],
     "input"),
    ("report memory --out", ["report", "memory", "--devices", "pixel_5a", "--policies", "reload", "--out", "{x}"],
     "out-dir"),
    ("sweep STUDY", ["sweep", "{x}", "--out", "{o}", "--workers", "1", "--no-progress"], "input"),
    ("sweep --out", ["sweep", "{s}", "--out", "{x}", "--workers", "1", "--no-progress"], "out-dir"),
]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from atomsim.run.synthetic import make_video
    return make_video(tmp_path_factory.mktemp("video") / "v.mp4", seconds=2.0)


@pytest.fixture
def heavy_work_replaced(monkeypatch):
    from atomsim import models
    from atomsim.models import store
    from atomsim.report import sweep_plots
    from atomsim.validate import suite
    monkeypatch.setattr(importlib.import_module("atomsim.profile.measure"), "measure", _accepted)
    monkeypatch.setattr(models, "build", _accepted)
    monkeypatch.setattr(store, "build", _accepted)
    monkeypatch.setattr(suite, "validate_suite", _accepted)
    monkeypatch.setattr(sweep_plots, "plot_all", lambda *a, **k: [])
    import atomsim.validate.cli as vcli
    if hasattr(vcli, "validate_suite"):
        monkeypatch.setattr(vcli, "validate_suite", _accepted)


def make_path(tmp_path: Path, kind: str) -> Path:
    x = tmp_path / "x.json"
    if kind == "directory":
        x.mkdir()
    elif kind == "binary":
        x.write_bytes(bytes(range(256)) * 8)
    elif kind == "empty":
        x.write_bytes(b"")
    return x


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case,argv,role", MATRIX, ids=[m[0] for m in MATRIX])
def test_path_argument(case, argv, role, kind, tmp_path, video, heavy_work_replaced, capsys):
    x = make_path(tmp_path, kind)
    study = tmp_path / "study.yaml"
    study.write_text(f"base: {SCENARIO}\ngrid: {{workload.clips: [1, 2]}}\n")
    out = tmp_path / "o"
    args = [str(a).format(x=x, o=out, v=video, s=study) for a in argv]
    try:
        rc = main(args)
    except Accepted:
        rc = "accepted"
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert rc in (EXIT_OK, EXIT_ERROR, EXIT_OOM, "accepted"), (rc, err)
    errors = [line for line in err.splitlines() if line.startswith("atomsim: error:")]
    if rc == EXIT_ERROR and errors:
        assert len(errors) == 1, err
    refused = rc == EXIT_ERROR
    if role == "input":
        assert refused and str(x) in errors[0], err
    if role == "out-dir" and kind in ("binary", "empty"):
        assert refused and str(x) in errors[0] and "not a directory" in errors[0], err
    if role == "out-file" and kind == "directory":
        assert refused and str(x) in errors[0] and "is a directory" in errors[0], err
    if refused and role in ("out-dir", "out-file"):
        assert not list(tmp_path.glob("x.json*.partial*")), "work started before the output was checked"
