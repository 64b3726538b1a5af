"""Schema: files validated on load; errors name the file, the field and what was expected."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atomsim.errors import ConfigError, ProfileError
from atomsim.schema.profile import Stat, load_profile
from atomsim.schema.scenario import load_devices, load_scenario
from atomsim.schema.trace import Trace, read_trace, summary_dict, write_trace

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_catalog_has_the_papers_phones():
    devs = load_devices()
    assert devs["pixel_5a"].ram_bytes == 6 * 10**9
    assert devs["pixel_8a"].ram_bytes == devs["galaxy_s23"].ram_bytes == 8 * 10**9
    assert "host" in devs


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios" / "paper").glob("*.yaml")), ids=lambda p: p.name)
def test_paper_scenarios_load(path):
    sc = load_scenario(path)
    assert Path(sc.profile).exists()
    load_profile(sc.profile)


def test_malformed_yaml_names_the_file(tmp_path):
    p = write(tmp_path, "bad.yaml", "device: [pixel_5a\nworkload: {task: assembly")
    with pytest.raises(ConfigError, match=r"bad\.yaml: malformed scenario \(YAML\)"):
        load_scenario(p)


def test_missing_field_is_named(tmp_path):
    p = write(tmp_path, "nodev.yaml", "workload: {task: assembly}\n")
    with pytest.raises(ConfigError, match=r"nodev\.yaml: field 'device': missing"):
        load_scenario(p)
    p = write(tmp_path, "nowork.yaml", "device: pixel_5a\n")
    with pytest.raises(ConfigError, match=r"nowork\.yaml: field 'workload'"):
        load_scenario(p)


def test_unknown_device_lists_the_catalog(tmp_path):
    p = write(tmp_path, "d.yaml", "device: iphone\nworkload: {task: assembly}\n")
    with pytest.raises(ConfigError, match=r"unknown device 'iphone'; valid: .*pixel_5a"):
        load_scenario(p)


def test_page_cache_field(tmp_path):
    ok = write(tmp_path, "w.yaml", "device: pixel_5a\nworkload: {task: qa}\npage_cache: warm\n")
    assert load_scenario(ok).page_cache == "warm"
    bad = write(tmp_path, "b.yaml", "device: pixel_5a\nworkload: {task: qa}\npage_cache: hot\n")
    with pytest.raises(ConfigError, match=r"b\.yaml: field 'page_cache'"):
        load_scenario(bad)


def test_device_base_with_changes(tmp_path):
    p = write(tmp_path, "c.yaml", "device: {base: pixel_5a, ram_gb: 5.5}\nworkload: {task: assembly}\n")
    sc = load_scenario(p)
    assert sc.device.ram_bytes == 5_500_000_000 and sc.device.cores == 8


def profile_data():
    return json.loads((ROOT / "profiles" / "paper-pixel_5a.json").read_text())


def test_unknown_profile_version(tmp_path):
    data = profile_data()
    data["version"] = 99
    p = write(tmp_path, "p.json", json.dumps(data))
    with pytest.raises(ProfileError, match=r"p\.json: field 'version': unknown profile version 99"):
        load_profile(p)


def test_profile_missing_field(tmp_path):
    data = profile_data()
    del data["modules"]["decoder/torchao-int8"]["resident_bytes"]
    p = write(tmp_path, "p.json", json.dumps(data))
    with pytest.raises(ProfileError, match=r"p\.json: field 'modules\.decoder/torchao-int8\.resident_bytes'"):
        load_profile(p)


def test_malformed_profile_json(tmp_path):
    p = write(tmp_path, "p.json", "{not json")
    with pytest.raises(ConfigError, match=r"p\.json: malformed profile \(JSON\)"):
        load_profile(p)


def test_published_profiles_say_how():
    for phone in ("pixel_5a", "pixel_8a", "galaxy_s23"):
        prof = load_profile(ROOT / "profiles" / f"paper-{phone}.json")
        assert prof.source == "published"
        assert set(prof.modules) == {f"{m}/torchao-int8" for m in
                                     ("video-encoder", "decoder", "bert-decoder", "sentence-encoder")}
        assert "load.cold_s" in prof.method and "embed" in prof.method
    # the demo's packaged copy is the same profile
    assert (ROOT / "atomsim" / "data" / "paper-pixel_5a.json").read_bytes() == \
        (ROOT / "profiles" / "paper-pixel_5a.json").read_bytes()


def test_stat_point_and_scaled():
    s = Stat.point(2.0)
    assert s.median == 2.0 and s.n == 1 and s.scaled(1.5).median == 3.0


def test_trace_round_trip(tmp_path):
    from atomsim.sim import simulate
    sc = load_scenario(ROOT / "scenarios/paper/assembly-pixel_5a.yaml")
    res = simulate(sc, None, "reuse-parallel")
    write_trace(tmp_path, res.trace, res.summary)
    tr, summary = read_trace(tmp_path)
    assert summary == json.loads(json.dumps(res.summary))
    assert len(tr.spans) == len(res.trace.spans)
    assert tr.e2e_s == pytest.approx(res.trace.e2e_s, abs=1e-5)
    assert summary_dict(tr, scenario="x")["peak_bytes"] == res.summary["peak_bytes"]
    assert isinstance(tr, Trace)
