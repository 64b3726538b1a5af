"""Issue 14, systematic: mutate valid scenarios, studies and profiles field by field (wrong type,
out of range, missing, unknown, duplicated, non-UTF-8) and run the command a user would.

Whatever the mutation, the command exits with a documented code (0, 2 or 3), prints no traceback,
and when it refuses the file (2): one line naming the file and the field, and nothing written."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from atomsim.cli import main
from atomsim.errors import EXIT_ERROR, EXIT_OK, EXIT_OOM

import test_report_fakes as fakes

ROOT = Path(__file__).resolve().parent.parent
PAPER_PROFILE = str(ROOT / "profiles" / "paper-pixel_5a.json")
SCENARIO = {"name": "s", "device": "pixel_5a",
            "workload": {"task": "assembly", "clips": 3, "top_k": 2, "prompt": "a reel", "frames_per_clip": 6,
                         "queries": ["a dog"]},
            "models": {"preset": "paper", "quant": "torchao-int8"}, "policy": "reuse-parallel",
            "threads": {"main": 1, "encoder": 1, "decoder": 1}, "profile": PAPER_PROFILE}
STUDY = {"name": "st", "base": copy.deepcopy(SCENARIO),
         "grid": {"workload.clips": [1, 2], "policy": ["reload", "reuse-parallel"]},
         "profile": PAPER_PROFILE, "plots": {"x": "workload.clips"}}
PROFILE = fakes.profile_dict()
BASES = {"scenario": SCENARIO, "study": STUDY, "profile": PROFILE}
BAD_VALUES = ("x", [1], {"a": 1}, True, None, -1, 0, 10**12, 1.5)
KINDS = ("value", "missing", "unknown", "duplicated", "non-utf8")
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def leaves(data, prefix=()):
    """Paths to every leaf of nested mappings (lists are leaves)."""
    for k, v in data.items():
        if isinstance(v, dict) and v:
            yield from leaves(v, prefix + (k,))
        else:
            yield prefix + (k,)


LEAVES = {what: sorted(leaves(d), key=str) for what, d in BASES.items()}


def mutate(data: dict, path: tuple, kind: str, value):
    data = copy.deepcopy(data)
    node = data
    for k in path[:-1]:
        node = node[k]
    if kind == "value":
        node[path[-1]] = value
    elif kind == "missing":
        del node[path[-1]]
    elif kind == "unknown":
        node["colour"] = value
    return data


def file_text(what: str, data: dict, path: tuple, kind: str, at: float) -> bytes:
    text = json.dumps(data, indent=1) if what == "profile" else yaml.safe_dump(data, sort_keys=False)
    if kind == "duplicated":   # the path's top-level key once more, at the top of the file
        top = path[0]
        again = json.dumps({top: data[top]})[1:-1] if what == "profile" else yaml.safe_dump({top: data[top]}).strip()
        text = "{" + again + "," + text[1:] if what == "profile" else again + "\n" + text
    raw = text.encode()
    if kind == "non-utf8":
        i = int(at * len(raw))
        raw = raw[:i] + b"\xff" + raw[i:]
    return raw


def command(what: str, f: Path, out: Path) -> list[str]:
    if what == "scenario":
        return ["simulate", str(f), "--policy", "reuse-parallel", "--no-png", "--out", str(out)]
    if what == "profile":
        sc = f.parent / "ok.yaml"
        sc.write_text(yaml.safe_dump({**SCENARIO, "profile": str(f)}))
        return ["simulate", str(sc), "--policy", "reuse-parallel", "--no-png", "--out", str(out)]
    return ["sweep", str(f), "--out", str(out), "--workers", "1", "--no-progress"]


def check(what, path, kind, value, at, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp(what)
    f = tmp / ("p.json" if what == "profile" else f"{what}.yaml")
    f.write_bytes(file_text(what, mutate(BASES[what], path, kind, value), path, kind, at))
    out = tmp / "out"
    try:
        rc = main(command(what, f, out))
    except SystemExit as e:   # argparse: only for bad options, which these are not
        raise AssertionError(f"argparse refused {command(what, f, out)}") from e
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc in (EXIT_OK, EXIT_ERROR, EXIT_OOM), (rc, err)
    errors = [line for line in err.splitlines() if line.startswith("atomsim: error:")]
    if rc == EXIT_ERROR and not errors:   # a sweep whose points failed: tables written, reasons printed
        assert what == "study" and "failed" in err
        return
    if rc != EXIT_ERROR:
        return
    assert len(errors) == 1 and len(errors[0]) < 2000, err
    line = errors[0]
    assert str(f) in line, line
    if kind != "non-utf8":
        named = "colour" if kind == "unknown" else str(path[-1] if kind != "duplicated" else path[0])
        assert named in line, (path, kind, line)
    assert not out.exists() or what == "study" and "failed" in line


@SETTINGS
@given(path=st.sampled_from(LEAVES["scenario"]), kind=st.sampled_from(KINDS), value=st.sampled_from(BAD_VALUES),
       at=st.floats(0, 1))
def test_mutated_scenarios(path, kind, value, at, tmp_path_factory, capsys):
    check("scenario", path, kind, value, at, tmp_path_factory, capsys)


@SETTINGS
@given(path=st.sampled_from(LEAVES["profile"]), kind=st.sampled_from(KINDS), value=st.sampled_from(BAD_VALUES),
       at=st.floats(0, 1))
def test_mutated_profiles(path, kind, value, at, tmp_path_factory, capsys):
    check("profile", path, kind, value, at, tmp_path_factory, capsys)


@settings(SETTINGS, max_examples=40)
@given(path=st.sampled_from(LEAVES["study"]), kind=st.sampled_from(KINDS), value=st.sampled_from(BAD_VALUES),
       at=st.floats(0, 1))
def test_mutated_studies(path, kind, value, at, tmp_path_factory, capsys, monkeypatch):
    import atomsim.report.sweep_plots as plots
    monkeypatch.setattr(plots, "plot_all", lambda *a, **k: [])   # inputs are the point, not pictures
    check("study", path, kind, value, at, tmp_path_factory, capsys)
