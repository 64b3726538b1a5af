"""Issue 26, item 1: every number of a profile is checked on load. A non-finite figure anywhere, or a
negative one where its meaning forbids it (latencies, sample statistics, bytes, counts, bandwidths,
seconds), is refused in one line naming the file and the field path; imported figures the same;
the JSON writers refuse to write a non-finite number."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomsim.cli import main
from atomsim.errors import AtomsimError, ConfigError
from atomsim.schema.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [ROOT / "profiles" / "paper-pixel_5a.json", ROOT / "profiles" / "host-small-ram.json"]
SCENARIO = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
FIX = ROOT / "tests" / "fixtures" / "phone-tools"
# where a number may be negative: deltas against the process's baseline, and free-form sections
# (a device's fingerprint, the command's settings, a tool's own figures, provenance)
SIGNED = {"resident_anon_bytes", "other_file_bytes"}
FREE_FORM = {"device", "method", "settings", "tool_figures", "imported", "warnings"}


def leaves(x, parts=()):
    """Path parts of every number (not bool) in a parsed JSON value."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, parts + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, parts + (i,))
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        yield parts


def shown(parts) -> str:
    """The field path as the message gives it: modules["decoder/fp32"].ops.caption.latency_s["1"].median."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.isidentifier():
            out += ("." if out else "") + p
        else:
            out += f'["{p}"]'
    return out


def may_be_negative(parts) -> bool:
    keys = [p for p in parts if isinstance(p, str)]
    return bool(set(keys) & FREE_FORM) or keys[-1] in SIGNED


def get(data, parts):
    for p in parts[:-1]:
        data = data[p]
    return data[parts[-1]]


def put(data, parts, value):
    for p in parts[:-1]:
        data = data[p]
    data[parts[-1]] = value


DATA = {p: json.loads(p.read_text()) for p in PROFILES}
LEAVES = [(p, parts) for p in PROFILES for parts in leaves(DATA[p])]


def one_per_field(profile):
    """One leaf of each field (list indices, module keys and thread counts folded)."""
    seen, out = set(), []
    for parts in leaves(DATA[profile]):
        kind = tuple("*" if isinstance(q, int) or (i and parts[i - 1] in ("modules", "latency_s", "ops"))
                     else q for i, q in enumerate(parts))
        if kind not in seen:
            seen.add(kind)
            out.append(parts)
    return out


def written(tmp_path, profile, parts, value) -> Path:
    data = json.loads(json.dumps(DATA[profile]))
    put(data, parts, value)
    bad = tmp_path / "profile.json"
    bad.write_text(json.dumps(data, allow_nan=True))   # NaN / Infinity literals, as Python's json reads them
    return bad


def check(bad: Path, parts, value):
    if not math.isfinite(value) or not may_be_negative(parts):
        with pytest.raises(ConfigError) as e:
            load_profile(bad)
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith(f"{bad}: ")
        assert f"field '{shown(parts)}'" in msg, msg
        if parts != ("version",):
            assert ("not a finite number" if not math.isfinite(value) else "negative") in msg, msg
    else:
        load_profile(bad)   # a delta or a free-form figure: its sign is not refused


def test_the_path_is_shown_as_the_issue_says():
    assert shown(("modules", "decoder/fp32", "ops", "caption", "latency_s", "1", "median")) == \
        'modules["decoder/fp32"].ops.caption.latency_s["1"].median'


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_every_field_refuses_nan_inf_and_negative(tmp_path, profile):
    fields = one_per_field(profile)
    assert len(fields) > 30
    for parts in fields:
        for value in (math.nan, math.inf, -math.inf, -1 if isinstance(get(DATA[profile], parts), int) else -0.5):
            check(written(tmp_path, profile, parts, value), parts, value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(leaf=st.sampled_from(LEAVES), kind=st.sampled_from(["nan", "inf", "-inf", "negative"]),
       magnitude=st.floats(min_value=1e-9, max_value=1e18))
def test_property_any_numeric_leaf(tmp_path, leaf, kind, magnitude):
    profile, parts = leaf
    if kind == "negative":
        value = -max(1, int(magnitude)) if isinstance(get(DATA[profile], parts), int) else -magnitude
    else:
        value = float(kind)
    check(written(tmp_path, profile, parts, value), parts, value)


def test_literal_nan_and_infinity_in_the_text(tmp_path):
    text = (ROOT / "profiles" / "paper-pixel_5a.json").read_text()
    data = json.loads(text)
    med = data["modules"]["decoder/torchao-int8"]["ops"]["caption"]["latency_s"]["1"]["median"]
    bad = tmp_path / "p.json"
    bad.write_text(text.replace(f'"median": {json.dumps(med)}', '"median": NaN', 1))
    with pytest.raises(ConfigError, match=r"field 'modules\[\"[a-z-]+/torchao-int8\"\]\.[a-z_.]+\[\"1\"\]\.median': "
                                          r"not a finite number \(nan\)"):
        load_profile(bad)
    bad.write_text(text.replace('"baseline_rss_bytes": ', '"baseline_rss_bytes": -Infinity, "x": ', 1))
    with pytest.raises(ConfigError, match=r"field 'baseline_rss_bytes': not a finite number \(-inf\)"):
        load_profile(bad)


def test_every_committed_profile_loads():
    committed = [p for p in sorted((ROOT / "profiles").glob("*.json")) if not p.name.endswith(".partial.json")]
    assert len(committed) >= 10
    for p in committed + [ROOT / "atomsim" / "data" / "paper-pixel_5a.json"]:   # not the side file of a profile being made
        load_profile(p)


def test_simulate_on_a_nan_profile_exits_2_before_any_work(tmp_path, capsys):
    parts = ("modules", "decoder/torchao-int8", "ops", "caption", "latency_s", "1", "median")
    bad = written(tmp_path, PROFILES[0], parts, math.nan)
    out = tmp_path / "out"
    assert main(["simulate", str(SCENARIO), "--profile", str(bad), "--out", str(out), "--no-png"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0] == (f"atomsim: error: {bad}: field 'modules[\"decoder/torchao-int8\"].ops.caption."
                      f"latency_s[\"1\"].median': not a finite number (nan)")
    assert not out.exists() or not any(out.iterdir())


def test_writers_refuse_non_finite_numbers(tmp_path):
    from atomsim.io import atomic_write_json
    target = tmp_path / "summary.json"
    with pytest.raises(AtomsimError) as e:
        atomic_write_json(target, {"e2e_s": 1.0, "steps": [{"t": 1}, {"t": math.inf}]})
    assert str(e.value).startswith(f"{target}: field 'steps[1].t': not a finite number (inf)")
    assert "\n" not in str(e.value)
    assert not any(tmp_path.iterdir())   # nothing written, no temporary left


# ---- imported figures
@pytest.fixture
def published(tmp_path):
    p = tmp_path / "phone.json"
    shutil.copy(ROOT / "profiles" / "paper-pixel_5a.json", p)
    return p


@pytest.mark.parametrize("value, why", [(math.nan, "not a finite number"), (math.inf, "not a finite number"),
                                        (-412.5, "negative")])
def test_minibench_figure_not_finite_or_negative(published, tmp_path, value, why):
    from atomsim.profile.imports import import_file
    rows = json.loads((FIX / "minibench-benchmark_results.json").read_text())
    rows[0]["actualValue"] = value
    bad = tmp_path / "benchmark_results.json"
    bad.write_text(json.dumps(rows, allow_nan=True))
    before = published.read_bytes()
    with pytest.raises(ConfigError, match=rf"benchmark_results\.json: field '\[0\]\.actualValue': {why}"):
        import_file(bad, "minibench", "video-encoder/torchao-int8:encode", published, threads=4)
    assert published.read_bytes() == before


@pytest.mark.parametrize("field, values", [("all_inference_times", [41200, math.inf, 41000]),
                                           ("all_first_load_times", [math.nan, 812000])])
def test_aihub_samples_not_finite(published, tmp_path, field, values):
    from atomsim.profile.imports import import_file
    data = json.loads((FIX / "aihub-profile.json").read_text())
    data["execution_summary"][field] = values
    bad = tmp_path / "aihub.json"
    bad.write_text(json.dumps(data, allow_nan=True))
    with pytest.raises(ConfigError, match=rf"aihub\.json: field 'execution_summary\.{field}'"):
        import_file(bad, "aihub", "video-encoder/torchao-int8:encode", published, threads=1)


def test_llama_bench_samples_not_finite(published, tmp_path):
    from atomsim.profile.imports import import_file
    rows = json.loads((FIX / "llama-bench.json").read_text())
    rows[0]["samples_ns"] = [1e6, math.inf]
    bad = tmp_path / "lb.json"
    bad.write_text(json.dumps(rows, allow_nan=True))
    with pytest.raises(ConfigError, match=r"lb\.json: field '\[0\]\.samples_ns'"):
        import_file(bad, "llama-bench", "decoder/torchao-int8:generate", published)
