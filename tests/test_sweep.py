import json

import pytest

import test_report_fakes as fakes
from atomsim.cli import main
from atomsim.errors import ConfigError
from atomsim.report.study import load_study
from atomsim.report.sweep import PARTIAL, read_csv_rows, run_sweep

FAKE = "test_report_fakes:simulate"


@pytest.fixture
def study_file(tmp_path):
    fakes.write_profile(tmp_path / "prof.json")
    p = tmp_path / "study.yaml"
    p.write_text("""
name: small
base: {device: pixel_5a, workload: {task: assembly, clips: 2}, models: {preset: paper, quant: torchao-int8}}
grid:
  device.ram_gb: [2, 6]
  workload.clips: [1, 3]
  policy: [reload, reuse-parallel]
profile: prof.json
""")
    return p


def test_local_processes_and_dask_give_identical_tables(study_file, tmp_path):
    pytest.importorskip("distributed")
    a = run_sweep(study_file, tmp_path / "a", workers=1, plots=False)       # real simulator, in process
    b = run_sweep(study_file, tmp_path / "b", workers=2, chunk_size=3, plots=False)
    c = run_sweep(study_file, tmp_path / "c", workers=2, dask="local", processes=False, chunk_size=2, plots=False)
    ta, tb, tc = ((tmp_path / d / "points.csv").read_bytes() for d in "abc")
    assert ta == tb == tc
    assert len(a.rows) == 8 and not any(r["error"] for r in a.rows)
    assert [r["index"] for r in c.rows] == list(range(8))
    assert any(r["oom"] for r in a.rows) and not all(r["oom"] for r in a.rows)   # 2 GB is too little
    assert all(r["energy_j"] > 0 for r in a.rows if not r["oom"])
    assert not (tmp_path / "a" / PARTIAL).exists()


def test_tables_and_plots(study_file, tmp_path):
    res = run_sweep(study_file, tmp_path / "o", simulate=FAKE)
    names = {p.name for p in res.files}
    assert {"points.csv", "e2e_vs_clips.png", "reuse_reduction_heatmap.png", "peak_memory_vs_ram_gb.png"} <= names
    rows = read_csv_rows(tmp_path / "o" / "points.csv")
    assert rows[0]["device.ram_gb"] == "2" and rows[0]["policy"] == "reload"
    if "points.parquet" in names:
        import pyarrow.parquet as pq
        t = pq.read_table(tmp_path / "o" / "points.parquet")
        assert t.num_rows == 8 and t.column("e2e_s").to_pylist() == [r["e2e_s"] for r in res.rows]


def test_unknown_grid_field_names_it_and_lists_fields(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("base: {device: pixel_5a, workload: {task: assembly}}\ngrid: {workload.clipz: [1, 2]}\n")
    with pytest.raises(ConfigError) as e:
        load_study(p)
    msg = str(e.value)
    assert "'workload.clipz'" in msg and "valid fields:" in msg and "workload.clips" in msg and "device.ram_gb" in msg


def test_all_points_failing_says_why(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("base: {device: pixel_5a, workload: {task: assembly}}\ngrid: {workload.clips: [1, 2]}\n"
                 "profile: missing.json\n")
    with pytest.raises(ConfigError, match=r"all 2 points of study .* failed; 2× profile file not found: .*missing.json"):
        run_sweep(p, tmp_path / "o", simulate=FAKE)
    assert main(["sweep", str(p), "--out", str(tmp_path / "o2"), "--workers", "1", "--no-progress"]) == 2


def test_some_points_failing_keep_their_error(tmp_path):
    fakes.write_profile(tmp_path / "prof.json")
    p = tmp_path / "s.yaml"
    p.write_text("base: {device: pixel_5a, workload: {task: assembly}, profile: prof.json}\n"
                 "grid: {models.quant: [torchao-int8, nope]}\n")
    res = run_sweep(p, tmp_path / "o", simulate=FAKE, plots=False)
    assert res.rows[0]["error"] == "" and "quantization backend 'nope'" in res.rows[1]["error"]


def test_interrupted_sweep_resumes_without_redoing_points(tmp_path):
    fakes.write_profile(tmp_path / "prof.json")
    p = tmp_path / "s.yaml"
    p.write_text("base: {device: pixel_5a, workload: {task: assembly}}\ngrid: {workload.clips: [1, 2, 3, 4, 5, 6, 7, 8]}\n"
                 "profile: prof.json\n")
    out = tmp_path / "o"
    fakes.CALLS.clear()
    fakes.INTERRUPT_AT = 6
    try:
        with pytest.raises(KeyboardInterrupt):
            run_sweep(p, out, simulate="test_report_fakes:counting_simulate", chunk_size=1, plots=False)
    finally:
        fakes.INTERRUPT_AT = None
    assert fakes.CALLS == [1, 2, 3, 4, 5]
    lines = (out / PARTIAL).read_text().splitlines()
    assert json.loads(lines[0])["study"] and len(lines) == 6 and not (out / "points.csv").exists()
    fakes.CALLS.clear()
    res = run_sweep(p, out, simulate="test_report_fakes:counting_simulate", chunk_size=1, plots=False)
    assert fakes.CALLS == [6, 7, 8] and res.resumed == 5
    assert [r["workload.clips"] for r in res.rows] == list(range(1, 9))
    full = run_sweep(p, tmp_path / "fresh", simulate="test_report_fakes:counting_simulate", plots=False)
    assert (out / "points.csv").read_bytes() == (tmp_path / "fresh" / "points.csv").read_bytes()
    assert full.resumed == 0


def test_profile_template_and_by_mapping(tmp_path):
    for d in ("pixel_5a", "pixel_8a"):
        fakes.write_profile(tmp_path / f"p-{d}.json", device=d)
    for spec in ('"p-{device}.json"', "{by: device, paths: {pixel_5a: p-pixel_5a.json, pixel_8a: p-pixel_8a.json}}"):
        p = tmp_path / "s.yaml"
        p.write_text("base: {device: pixel_5a, workload: {task: assembly}}\ngrid: {device: [pixel_5a, pixel_8a]}\n"
                     f"profile: {spec}\n")
        res = run_sweep(p, tmp_path / "o", simulate=FAKE, plots=False)
        assert [r["ram_bytes"] for r in res.rows] == [6_000_000_000, 8_000_000_000]
        assert not any(r["error"] for r in res.rows)


def test_cli_sweep(study_file, tmp_path, capsys):
    # 2 of its 8 points run out of memory: exit 3 (EXIT_OOM), the tables are written
    assert main(["sweep", str(study_file), "--out", str(tmp_path / "o"), "--workers", "1", "--no-progress"]) == 3
    assert "8 points (0 resumed, 0 failed, 2 out of memory)" in capsys.readouterr().out
    assert (tmp_path / "o" / "points.csv").exists()


def test_plot_options_must_name_grid_fields(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("base: {device: pixel_5a, workload: {task: assembly}}\ngrid: {workload.clips: [1, 2], policy: [reload]}\n"
                 "plots: {heatmap: [workload.clips, device.ram_gb]}\n")
    with pytest.raises(ConfigError, match=r"plots.heatmap: 'device.ram_gb' is not a grid field; grid: workload.clips, policy"):
        load_study(p)


def test_example_studies_load():
    from pathlib import Path
    for f in sorted((Path(__file__).resolve().parents[1] / "scenarios" / "studies").glob("*.yaml")):
        st = load_study(f)
        assert st.size() >= 12, f
