"""The validator end to end on the tiny preset: real runs, simulated runs, one report.

The profile here is made up (the errors it gives are not asserted): what is checked is that the
same plan runs on both sides, the files are written, and the figures are where they belong.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import videos as tv  # noqa: E402

from atomsim.cli import main  # noqa: E402
from atomsim.schema.profile import Profile, Stat, save_profile  # noqa: E402
from atomsim.schema.scenario import scenario_from_mapping  # noqa: E402


def made_up_profile(quant="fp32") -> Profile:
    def module(model, mb, ops):
        return {"model": model, "quant": quant, "preset": "tiny", "file_bytes": mb * 10**6, "resident_bytes": mb * 10**6,
                "load": {"cold_s": Stat.of([0.05, 0.06]).model_dump(), "warm_s": Stat.of([0.02, 0.03]).model_dump(),
                         "transient_bytes": [0, 10**6]},
                "ops": {op: {"latency_s": {"1": Stat.of([lat]).model_dump(), "2": Stat.of([lat * 0.6]).model_dump()},
                             "activation_peak_bytes": 10**6, "input_bytes": 10**5, "items": 1} for op, lat in ops.items()}}
    mods = [module("video-encoder", 2, {"encode": 0.02}), module("decoder", 3, {"caption": 0.05, "generate": 0.1}),
            module("bert-decoder", 2, {"caption": 0.04}), module("sentence-encoder", 90, {"embed": 0.01})]
    return Profile.model_validate({"version": 1, "source": "measured", "baseline_rss_bytes": 400 * 10**6,
                                   "storage_read_bytes_per_s": 1e9, "modules": {f"{m['model']}/{quant}": m for m in mods}})


def scenario(name, policy, clips=2):
    return {"name": name, "device": "host", "policy": policy,
            "workload": {"task": "assembly", "clips": clips, "top_k": 2, "prompt": "a highlight reel"},
            "models": {"preset": "tiny", "quant": "fp32"}, "threads": {"main": 1, "encoder": 1, "decoder": 1}}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return tv.make_video(tmp_path_factory.mktemp("v") / "v.mp4", seconds=22.0, width=80, height=60, fps=5)  # 3 clips


def test_validate_suite_runs_the_same_plan_on_both_sides(tiny_store, video, tmp_path):
    from atomsim.validate.suite import validate_suite
    scenarios = [scenario_from_mapping(scenario(n, p), n) for n, p in (("a-reload", "reload"), ("a-par", "reuse-parallel"))]
    result = validate_suite(scenarios, made_up_profile(), [str(video)], tmp_path / "out", store=tiny_store, progress=False)
    rows = {r["name"]: r for r in result["scenarios"]}
    assert set(rows) == {"a-reload", "a-par"}
    for name, r in rows.items():
        assert r["clips"] == 2                     # the scenario's cap, though the video has 3 clips
        m = json.loads((tmp_path / "out" / name / "measured" / "summary.json").read_text())
        s = json.loads((tmp_path / "out" / name / "simulated" / "summary.json").read_text())
        assert r["measured_e2e_s"] == m["e2e_s"] and r["simulated_e2e_s"] == s["e2e_s"]
        assert m["steps"] == s["steps"]            # same plan, step for step
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 0
        for side in ("measured", "simulated"):   # drawn by `atomsim run` and by the suite, not the libraries
            assert (tmp_path / "out" / name / side / "timeline.png").stat().st_size > 0
        assert m["timeline"] == "timeline.png"
    assert len(result["reductions"]) == 1 and result["reductions"][0]["policy"] == "reuse-parallel"
    assert (tmp_path / "out" / "fidelity.md").read_text().startswith("# atomsim fidelity report")
    saved = json.loads((tmp_path / "out" / "fidelity.json").read_text())
    assert saved["summary"]["e2e_abs_error_pct"]["n"] == 2


def test_validate_repeat_runs_each_scenario_and_reports_the_spread(tiny_store, video, tmp_path):
    from atomsim.validate.suite import validate_suite
    scenarios = [scenario_from_mapping(scenario("r-reload", "reload"), "r-reload")]
    result = validate_suite(scenarios, made_up_profile(), [str(video)], tmp_path / "out", store=tiny_store,
                            progress=False, repeat=2)
    row = result["scenarios"][0]
    assert result["repeat"] == 2 and len(row["measured_repeats"]) == 2
    assert row["measured_e2e_s"] == min(r["e2e_s"] for r in row["measured_repeats"])   # lower middle of 2
    for k in (1, 2):
        assert (tmp_path / "out" / "r-reload" / f"measured-{k}" / "trace.json").exists()
    assert "run-to-run spread" in (tmp_path / "out" / "fidelity.md").read_text()


def test_validate_cli_bad_profile_names_the_field(tmp_path, capsys, video):
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"version": 99, "modules": {}}))
    sc = tmp_path / "s.yaml"
    import yaml
    sc.write_text(yaml.safe_dump(scenario("s", "reload")))
    code = main(["validate", str(sc), "--profile", str(bad), "--videos", str(video), "--out", str(tmp_path / "o")])
    assert code != 0
    assert "version" in capsys.readouterr().err


def test_validate_profile_missing_a_module_names_it(tmp_path, capsys, video, tiny_store):
    prof = made_up_profile()
    prof.modules.pop("bert-decoder/fp32")
    p = tmp_path / "p.json"
    save_profile(prof, p)
    import yaml
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(scenario("s", "reload")))
    code = main(["validate", str(sc), "--profile", str(p), "--videos", str(video), "--store", str(tiny_store),
                 "--out", str(tmp_path / "o")])
    assert code != 0
    assert "bert-decoder/fp32" in capsys.readouterr().err


def test_profile_request_asks_for_what_the_scenarios_run():
    from atomsim.validate.suite import profile_request
    mk = lambda n, pol, q, enc, dec: scenario_from_mapping(dict(scenario(n, pol), models={"preset": "tiny", "quant": q},
                                                                 threads={"main": 2, "encoder": enc, "decoder": dec}), n)
    req = profile_request([mk("a", "reload", "fp32", 1, 1), mk("b", "reuse-parallel", "fp32", 1, 1),
                           mk("c", "reuse-parallel", "torch-dynamic-int8", 2, 2), mk("d", "reuse-serial", "fp32", 1, 2)], 4)
    assert req == {"preset": "tiny", "quants": ["fp32", "torch-dynamic-int8"], "threads": [1, 2], "samples": 4,
                   "corun_pairs": [["fp32", "decoder", 1, 1], ["torch-dynamic-int8", "decoder", 2, 2]]}


def test_validate_measures_its_profile_between_the_rounds_of_real_runs(tmp_path, video, tiny_store, monkeypatch, capsys):
    """--measure-profile: the profile's rounds go before each round of real runs (2 samples, 2
    repeats: profile round 1, real runs 1, profile round 2, real runs 2), the profile is written
    and used, and the report says so."""
    import importlib

    import yaml
    pm = importlib.import_module("atomsim.profile.measure")   # the module (the package exports the function)
    calls, real = [], pm.measure

    def spy(*a, **kw):
        calls.append((kw["rounds_now"], len(list((tmp_path / "o" / "s").glob("measured-*/trace.json")))))
        return real(*a, **kw)

    monkeypatch.setattr(pm, "measure", spy)
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(scenario("s", "reload")))
    prof = tmp_path / "p.json"
    code = main(["validate", str(sc), "--profile", str(prof), "--measure-profile", "--profile-samples", "2",
                 "--repeat", "2", "--videos", str(video), "--store", str(tiny_store), "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    assert calls == [(1, 0), (2, 1)]
    from atomsim.schema.profile import load_profile
    p = load_profile(prof)
    assert p.settings["threads"] == [1] and p.settings["quants"] == ["fp32"]
    assert p.corun == []   # a reload scenario overlaps nothing
    assert p.modules["video-encoder/fp32"].load.cold_s.n == 2
    result = json.loads((tmp_path / "o" / "fidelity.json").read_text())
    assert result["profile_interleaved"] is True and result["profile"] == str(prof)
    assert "its rounds between the rounds of real runs" in (tmp_path / "o" / "fidelity.md").read_text()


def test_measurement_noise_is_each_run_against_the_median_of_the_others():
    """Analytic: runs 10, 11, 13 s -> 10 vs median(11, 13)=12: -16.7%; 11 vs 11.5: -4.3%; 13 vs
    10.5: +23.8%. Reload 10, 10, 10 s: 0%. Reuse 8, 9, 5 s: 8 vs 7 +14.3%, 9 vs 6.5 +38.5%, 5 vs
    8.5 -41.2%; per-round reductions 20, 10, 50%: 20 vs 30 -> 10 pp, 10 vs 35 -> 25 pp, 50 vs 15 -> 35 pp."""
    from atomsim.validate.compare import measurement_noise
    rows = [{"name": "a", "measured_repeats": [{"e2e_s": x} for x in (10, 11, 13)]},
            {"name": "r", "measured_repeats": [{"e2e_s": x} for x in (10, 10, 10)]},
            {"name": "u", "measured_repeats": [{"e2e_s": x} for x in (8, 9, 5)]}]
    nz = measurement_noise(rows, [{"reload": "r", "scenario": "u", "measured_reduction_per_round_pct": [20.0, 10.0, 50.0]}])
    e2e = sorted([100 * 2 / 12, 100 * 0.5 / 11.5, 100 * 2.5 / 10.5, 0, 0, 0, 100 / 7, 100 * 2.5 / 6.5, 100 * 3.5 / 8.5])
    assert nz["e2e_abs_pct"]["max"] == pytest.approx(e2e[-1]) and nz["e2e_abs_pct"]["median"] == pytest.approx(e2e[4])
    assert nz["reduction_abs_pp"] == {"median": pytest.approx(25), "max": pytest.approx(35), "n": 3}
    assert measurement_noise([{"name": "a", "measured_repeats": [{"e2e_s": 1}, {"e2e_s": 2}]}], []) is None


def test_huge_pages_differing_between_profile_and_runs_is_a_warning():
    from atomsim.validate.suite import huge_pages_warnings
    prof = made_up_profile()
    on = {"huge_pages": {"in_use": True}}
    assert huge_pages_warnings(prof, [on]) and "huge pages" in huge_pages_warnings(prof, [on])[0]
    prof.device = {"huge_pages": {"in_use": True}}
    assert huge_pages_warnings(prof, [on, on]) == []
    assert huge_pages_warnings(prof, [on, {"huge_pages": {"in_use": False}}])


def test_pinning_the_process_turns_on_huge_pages_for_torch_unless_set_before():
    import subprocess
    pin = "from atomsim.process import pin_measurement_process; pin_measurement_process()"
    code = f"import os; os.environ['THP_MEM_ALLOC_ENABLE']='0'; {pin}; print(os.environ['THP_MEM_ALLOC_ENABLE'])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "0"
    env = {k: v for k, v in __import__("os").environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    out = subprocess.run([sys.executable, "-c", f"import os; {pin}; print(os.environ['THP_MEM_ALLOC_ENABLE'])"],
                         capture_output=True, text=True, env=env).stdout.strip()
    assert out == "1"


def test_validate_refuses_a_profile_of_another_preset(tmp_path, capsys):
    """Before any real run: a tiny scenario against the small-preset profile names both files."""
    from atomsim.cli import main
    root = Path(__file__).resolve().parent.parent
    rc = main(["validate", str(root / "scenarios" / "examples" / "assembly-tiny.yaml"), "--profile",
               str(root / "profiles" / "host-small-validation.json"), "--videos", str(tmp_path / "v.mp4"),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "host-small-validation.json" in err and "assembly-tiny.yaml" in err and "preset" in err
