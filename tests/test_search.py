"""`atomsim search` through `main([...])`: its files, the best scenario per budget reproducing its
figures, the front, identical candidates whichever executor ran them, bad input; and a real run
of a budget policy following the simulator's evictions."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from atomsim.cli import main

ROOT = Path(__file__).resolve().parent.parent
PIXEL = ROOT / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
FEW = ["--policies", "reload", "reuse-parallel", "budget-cost", "budget-optimal"]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    rc = main(["search", str(PIXEL), "--ram", "6GB", "--ram", "4GB", "--out", str(out), "--workers", "2",
               "--no-progress", *FEW])
    return rc, out


def test_search_writes_tables_front_picture_and_best_scenarios(searched):
    rc, out = searched
    assert rc == 0
    for f in ("candidates.csv", "candidates.parquet", "pareto.csv", "pareto.png", "search.json",
              "best-6GB.yaml", "best-4GB.yaml"):
        assert (out / f).stat().st_size > 0, f
    cand = rows(out / "candidates.csv")
    assert {r["policy"] for r in cand} == {"reload", "reuse-parallel", "budget-cost", "budget-optimal"}
    assert {r["ram_bytes"] for r in cand} == {"6000000000", "4000000000"}
    assert len(cand) == 2 * len({r["schedule"] for r in cand})
    s = json.loads((out / "search.json").read_text())
    # 4 GB: reuse-parallel of the Llama-captioned pipeline does not fit; a budget schedule beats reload
    b4 = s["budgets"]["4GB"]
    assert b4["best"]["policy"].startswith("budget-") and b4["best_fixed"]["policy"] == "reload"
    assert b4["faster_than_fixed_pct"] > 10
    assert s["budgets"]["6GB"]["best"]["e2e_s"] <= b4["best"]["e2e_s"]


def test_front_is_not_dominated(searched):
    _, out = searched
    fit = [r for r in rows(out / "candidates.csv") if r["fits"] == "True"]
    front = rows(out / "pareto.csv")
    assert front
    for f in front:
        e, p = float(f["e2e_s"]), int(f["charged_peak_bytes"])
        assert not any(float(r["e2e_s"]) < e and int(r["charged_peak_bytes"]) < p for r in fit)
    peaks = [int(f["charged_peak_bytes"]) for f in front]
    assert peaks == sorted(peaks, reverse=True)   # fastest first, each next one needs less RAM


@pytest.mark.parametrize("label", ["6GB", "4GB"])
def test_best_scenario_reproduces_the_searched_figures(searched, label, tmp_path):
    _, out = searched
    best = json.loads((out / "search.json").read_text())["budgets"][label]["best"]
    sc = yaml.safe_load((out / f"best-{label}.yaml").read_text())
    assert sc["policy"] == best["policy"]
    assert main(["simulate", str(out / f"best-{label}.yaml"), "--policy", sc["policy"], "--out", str(tmp_path),
                 "--no-png"]) == 0
    summary = json.loads((tmp_path / sc["policy"] / "summary.json").read_text())
    assert summary["e2e_s"] == pytest.approx(best["e2e_s"], abs=1e-9)
    assert summary["peak_bytes"] == best["peak_bytes"] and not summary["oom"]


def test_candidates_identical_whichever_executor(tmp_path):
    pytest.importorskip("distributed")
    args = [str(PIXEL), "--ram", "4GB", "--no-progress", "--policies", "reload", "budget-lru", "budget-optimal"]
    assert main(["search", *args, "--out", str(tmp_path / "a"), "--workers", "1"]) == 0
    assert main(["search", *args, "--out", str(tmp_path / "b"), "--workers", "2"]) == 0
    from atomsim.report.search import parse_budgets, run_search
    run_search(PIXEL, parse_budgets(["4GB"]), tmp_path / "c", workers=2, dask="local", processes=False,
               policies=["reload", "budget-lru", "budget-optimal"])
    a, b, c = ((tmp_path / d / "candidates.csv").read_bytes() for d in "abc")
    assert a == b == c and a.count(b"\n") > 100


def test_nothing_fits_exits_3_with_the_minimum(tmp_path, capsys):
    rc = main(["search", str(PIXEL), "--ram", "6GB", "--ram", "2GB", "--out", str(tmp_path), "--no-progress",
               "--policies", "reload", "budget-optimal"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "budget 2GB: no schedule fits; the least any schedule needs is 3.5" in err
    assert (tmp_path / "best-6GB.yaml").exists() and not (tmp_path / "best-2GB.yaml").exists()


@pytest.mark.parametrize("ram, message", [("lots", "not a size"), ("0", "more than zero"), ("-2GB", "not a size"),
                                           ("0GB", "more than zero")])
def test_bad_budget_is_one_line_exit_2(tmp_path, capsys, ram, message):
    assert main(["search", str(PIXEL), f"--ram={ram}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--ram" in err[0]


def test_unknown_policy_leaves_nothing_to_search(tmp_path, capsys):
    assert main(["search", str(PIXEL), "--ram", "4GB", "--out", str(tmp_path), "--policies", "fastest"]) == 2
    assert "policy" in capsys.readouterr().err


def test_interrupted_search_resumes(tmp_path, monkeypatch):
    """Ctrl-C after 3 chunks (of 200): the candidates simulated so far are kept; the rerun simulates only the
    rest and writes the table an uninterrupted search writes."""
    from atomsim.report import study, sweep
    args = ["search", str(PIXEL), "--ram", "4GB", "--no-progress", "--policies", "reload", "budget-lru"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    calls = {"n": 0}
    real = study.run_chunk

    def interrupted(payload, indices, simulate=study.DEFAULT_SIMULATE):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(payload, indices, simulate)

    monkeypatch.setattr(sweep, "run_chunk", interrupted)
    assert main([*args, "--out", str(tmp_path / "cut")]) == 130
    assert not (tmp_path / "cut" / "candidates.csv").exists()
    kept = (tmp_path / "cut" / "points" / sweep.PARTIAL).read_text().count("\n") - 1
    assert kept == 600
    monkeypatch.setattr(sweep, "run_chunk", real)
    from atomsim.report.search import parse_budgets, run_search
    res = run_search(PIXEL, parse_budgets(["4GB"]), tmp_path / "cut", policies=["reload", "budget-lru"])
    assert res.resumed == kept
    assert (tmp_path / "cut" / "candidates.csv").read_bytes() == (tmp_path / "whole" / "candidates.csv").read_bytes()


# ---- the runner follows a budget policy's evictions
def tiny_profile(path: Path) -> Path:
    """A profile of the tiny modules' keys with sizes that make 2 GB tight: the decoder (1 GB) and
    the sentence encoder (1.2 GB) never fit together."""
    from test_sim_helpers import GB, make_profile
    p = make_profile(resident={"video-encoder": GB // 2, "decoder": GB, "bert-decoder": GB // 4,
                               "sentence-encoder": 6 * GB // 5})
    path.write_text(p.model_dump_json())
    return path


def test_the_runner_evicts_as_the_simulator(tiny_store, tmp_path):
    from atomsim.run import run_scenario
    from atomsim.run.synthetic import make_video
    from atomsim.schema.scenario import load_scenario
    from atomsim.sim import simulate
    video = tmp_path / "v.mp4"
    make_video(video, seconds=12.0, width=160, height=120, fps=5)
    sc = load_scenario(ROOT / "scenarios" / "examples" / "assembly-tiny.yaml").with_changes(**{
        "device.ram_bytes": 2 * 10**9, "policy": "budget-lru", "profile": str(tiny_profile(tmp_path / "p.json")),
        "workload.requests": ["a reel", "another reel"]})
    real = run_scenario(sc, [video], out_dir=tmp_path / "run", store=tiny_store, progress=False)
    sim = simulate(sc, clips=real.summary["clips"])
    assert real.summary["evictions"] == sim.summary["evictions"]
    assert [e["module"] for e in real.summary["evictions"]][:3] == ["video-encoder", "decoder", "sentence-encoder"]
    trace = json.loads((tmp_path / "run" / "trace.json").read_text())
    done = [e["name"] for e in sorted((e for e in trace["traceEvents"] if e["ph"] == "X"), key=lambda e: e["ts"])
            if e["name"].split("/")[-1].startswith(("load:", "free:"))]
    simulated = [s.step for s in sorted(sim.trace.spans, key=lambda s: s.start_s)
                 if s.step.split("/")[-1].startswith(("load:", "free:"))]
    assert done == simulated
    why = [e["args"]["why"] for e in trace["traceEvents"] if e["ph"] == "X" and "why" in e["args"]]
    assert why == [{k: v for k, v in e.items() if k not in ("step", "module")} for e in sim.summary["evictions"]]


def test_optuna_finds_the_exhaustive_optimum_here(searched, tmp_path, capsys):
    """On a space small enough to enumerate, Optuna's NSGA-II (seeded) with 200 trials a budget
    finds the schedule the exhaustive search found (gap 0), simulating a fraction of the space."""
    pytest.importorskip("optuna")
    _, grid = searched
    assert main(["search", str(PIXEL), "--ram", "6GB", "--ram", "4GB", "--out", str(tmp_path), "--no-progress",
                 "--sampler", "optuna", "--trials", "200", *FEW]) == 0
    assert "chosen by Optuna" in capsys.readouterr().out
    a, b = (json.loads((d / "search.json").read_text()) for d in (grid, tmp_path))
    assert b["sampler"] == "optuna" and b["rows"] < a["rows"] / 2
    for label in ("6GB", "4GB"):
        assert b["budgets"][label]["best"]["e2e_s"] == pytest.approx(a["budgets"][label]["best"]["e2e_s"], abs=1e-9)


def test_a_profile_of_another_device_is_refused_unless_allowed(tmp_path, capsys):
    args = ["search", str(PIXEL), "--ram", "6GB", "--no-progress", "--policies", "reload",
            "--profile", str(ROOT / "profiles" / "paper-pixel_8a.json")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--allow-device-mismatch" in err and "pixel_5a" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--out", str(tmp_path / "b"), "--allow-device-mismatch"]) == 0
    assert "WARNING" in capsys.readouterr().err
    assert "pixel_5a" in json.loads((tmp_path / "b" / "search.json").read_text())["device_mismatch"]


def test_a_schedule_fits_only_when_the_top_of_its_peak_range_does():
    """Completed in the planned RAM, but the top of its range (two lanes' ops in one heap) is above
    it: it does not fit, and the RAM it needs is that top."""
    from atomsim.report.search import candidate_row
    point = {"e2e_s": 1.0, "peak_bytes": 800, "peak_high_bytes": 950, "oom": False, "error": ""}
    row = candidate_row(point, 0, {"policy": "reuse-parallel", "device.ram_bytes": 900}, 100, 1000)
    assert row["completed"] and row["charged_peak_high_bytes"] == 850 and row["fits"]
    point["peak_high_bytes"] = 1001
    row = candidate_row(point, 0, {"policy": "reuse-parallel", "device.ram_bytes": 900}, 100, 1000)
    assert row["completed"] and not row["fits"]
    del point["peak_high_bytes"]   # a sweep written before the range: the peak alone
    assert candidate_row(point, 0, {"policy": "reuse-parallel", "device.ram_bytes": 900}, 100, 1000)["fits"]
