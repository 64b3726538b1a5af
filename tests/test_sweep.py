import json
import os
import signal
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

import test_report_fakes as fakes
from dask_cluster import dask_cluster
from atomsim.cli import main
from atomsim.errors import ConfigError
from atomsim.report.study import RESULT_COLUMNS, Study, load_study
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


# ---- a sweep in flat memory (issue 26, item 4)
TESTS = Path(__file__).resolve().parent
PAPER = TESTS.parent / "scenarios" / "paper" / "assembly-pixel_5a.yaml"
MB = 1 << 20


def fast_chunk(payload, indices, simulate=None):
    """Rows without simulating (as many as wanted, quickly): every result column a number."""
    study = Study.from_payload(payload)
    return [{"index": i, **study.point(i), **{c: i * 0.5 for c in RESULT_COLUMNS}, "oom": i % 3 == 0, "error": ""}
            for i in indices]


def grid_study(tmp_path: Path, points: int) -> Path:
    p = tmp_path / f"study-{points}.yaml"
    p.write_text(f"name: n{points}\nbase: {PAPER}\ngrid:\n  workload.clips: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
                 f"  device.ram_gb: {[round(3 + i / 100, 2) for i in range(points // 10)]}\n")
    return p


@pytest.mark.parametrize("workers", [1, 2])
def test_the_parents_memory_is_flat_in_the_number_of_points(tmp_path, monkeypatch, workers):
    """The sweep's process holds no rows, futures or results: the peak of its Python heap is the same
    for 500 and 4,000 points (4,000 rows are some 4 MB), in process and with local workers."""
    from atomsim.report import sweep
    monkeypatch.setattr(sweep, "run_chunk", fast_chunk)
    monkeypatch.setattr(sweep, "PARQUET_ROWS", 500, raising=False)   # a row group's rows are in memory at once
    run_sweep(grid_study(tmp_path, 100), tmp_path / "warm-up", plots=False, workers=workers)   # imports
    peaks = {}
    for n in (500, 4_000):
        study = load_study(grid_study(tmp_path, n))
        tracemalloc.start()
        try:
            res = run_sweep(study, tmp_path / f"o{n}", plots=False, chunk_size=10, workers=workers)
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(res.rows) == n and res.rows[n - 1]["index"] == n - 1
        assert (tmp_path / f"o{n}" / "points.csv").read_text().count("\n") == n + 1
    assert peaks[4_000] - peaks[500] < MB, {n: f"{p / MB:.2f} MB" for n, p in peaks.items()}


@pytest.mark.parametrize("dask", [False, True], ids=["local-processes", "dask"])
def test_chunks_are_sent_as_workers_free_up(study_file, dask):
    """A few chunks a worker are queued at a time, and a chunk's future goes with its result: not every
    chunk of the sweep sent at once, each with its future and its result kept to the end (on Dask, the
    scheduler knows the study and the chunks in flight only; their results are not kept on workers)."""
    from atomsim.report import sweep
    IN_FLIGHT = getattr(sweep, "IN_FLIGHT", 4)   # chunks a worker
    sent, cluster = [], None
    if dask:
        import logging
        pytest.importorskip("distributed")
        from distributed import LocalCluster
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None,
                               silence_logs=logging.ERROR)

    def chunks():
        for i in range(200):
            sent.append(i)
            yield [i % 8]
    it = sweep._executor_map(load_study(study_file).payload(), chunks(), 2, cluster and cluster.scheduler_address, FAKE,
                       True)
    try:
        assert len(next(it)) == 1
        assert len(sent) <= 2 * IN_FLIGHT + 1   # (one more sent for the one done)
        rows = sum(len(next(it)) for _ in range(100))
        if cluster is not None:
            assert len(cluster.scheduler.tasks) <= 2 * IN_FLIGHT + 1, len(cluster.scheduler.tasks)
        assert rows + sum(len(rows) for rows in it) == 199 and len(sent) == 200
    finally:
        it.close()
        if cluster is not None:
            cluster.close()


def test_rows_are_read_back_in_point_order(study_file, tmp_path):
    res = run_sweep(study_file, tmp_path / "o", simulate=FAKE, plots=False, workers=2, chunk_size=3)
    rows = list(res.rows)
    assert [r["index"] for r in rows] == list(range(8)) and not (tmp_path / "o" / PARTIAL).exists()
    assert res.rows == rows and rows == res.rows and res.rows[-1] == rows[7] and res.rows[2:5] == rows[2:5]
    assert res.rows != rows[:7] and list(res.rows) == rows   # iterated again: the same
    assert res.failed == 0 and res.oom == sum(r["oom"] for r in rows)
    with pytest.raises(IndexError):
        res.rows[8]
    csv_rows = read_csv_rows(tmp_path / "o" / "points.csv")
    assert [float(r["e2e_s"]) for r in csv_rows] == [r["e2e_s"] for r in rows]


def old_parquet_columns(cols, rows):
    """How write_tables typed Parquet columns when it held every row (the reference)."""
    import pyarrow as pa
    from atomsim.report.sweep import _cell
    data = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if any(isinstance(v, (dict, list)) for v in vals):
            vals = [None if v is None else _cell(v) for v in vals]
        kinds = {type(v) for v in vals if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            vals = [None if v is None else str(v) for v in vals]
        elif kinds == {int, float}:
            vals = [None if v is None else float(v) for v in vals]
        data[c] = vals
    return pa.table(data)


def test_parquet_written_by_row_groups_types_columns_as_before(tmp_path, monkeypatch):
    pq = pytest.importorskip("pyarrow.parquet")
    from atomsim.report import sweep
    p = tmp_path / "s.yaml"
    p.write_text(f"base: {PAPER}\ngrid:\n  device.ram_gb: [3, 4.5, 6]\n  policy: [reload, 7]\n"
                 "  changes: [{workload.clips: 2}, {workload.clips: 3, threads.main: 2}]\n")
    study = load_study(p)
    rows = [{"index": i, **study.point(i), **{c: None for c in RESULT_COLUMNS}} for i in range(study.size())]
    for r in rows:
        r.update(e2e_s=1.5 if r["index"] % 2 else 2, oom=r["index"] % 3 == 0, error="" if r["index"] else "x",
                 loads=r["index"], cold_loads=[1, {"a": 2.5}, None][r["index"] % 3])
    monkeypatch.setattr(sweep, "PARQUET_ROWS", 5)
    sweep.write_tables(study, rows, tmp_path)
    got, want = pq.read_table(tmp_path / "points.parquet"), old_parquet_columns(sweep.columns(study), rows)
    assert got.schema == want.schema and got.to_pylist() == want.to_pylist()
    assert pq.ParquetFile(tmp_path / "points.parquet").num_row_groups == 3


# ---- a Dask cluster of separate processes, one worker killed midway
def slow_simulate(scenario, profile):
    """The simulator, 20 ms slower a point (a sweep long enough to kill a worker during it); notes the
    process that ran each point in $SWEEP_TEST_PIDS."""
    from atomsim.sim import simulate
    time.sleep(0.02)
    if os.environ.get("SWEEP_TEST_PIDS"):
        with open(os.environ["SWEEP_TEST_PIDS"], "a") as f:
            f.write(f"{os.getpid()}\n")
    return simulate(scenario, profile)


def test_dask_cluster_of_processes_with_a_worker_killed_gives_the_local_table(tmp_path):
    """120 points of the Pixel 5a assembly (the real simulator) on a scheduler and 2 workers, separate
    processes on loopback; once the first worker has simulated points and a quarter of the rows are
    in, its process is killed (SIGKILL). The other finishes: the same table as 2 local processes."""
    pytest.importorskip("distributed")
    study = tmp_path / "study.yaml"
    study.write_text(f"name: killed\nbase: {PAPER}\ngrid:\n  policy: [reload, reuse-serial, reuse-parallel]\n"
                     "  workload.clips: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n  device.ram_gb: [3, 4, 6, 8]\n")
    local = run_sweep(study, tmp_path / "local", workers=2, plots=False)
    pids, partial = tmp_path / "pids.txt", tmp_path / "dask" / PARTIAL
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "SWEEP_TEST_PIDS": str(pids)}
    with dask_cluster(tmp_path, 2, env) as (address, _, (victim, survivor)):
        killed_at = []

        def kill_midway():
            while victim.poll() is None and not killed_at:
                done = len(partial.read_bytes().splitlines()) - 1 if partial.exists() else 0
                if done >= 30 and pids.exists() and str(victim.pid) in pids.read_text().split():
                    victim.kill()
                    killed_at.append(done)
                time.sleep(0.005)
        watcher = threading.Thread(target=kill_midway, daemon=True)
        watcher.start()
        res = run_sweep(study, tmp_path / "dask", workers=2, dask=address, chunk_size=2,
                        simulate="test_sweep:slow_simulate", plots=False)
        watcher.join(timeout=10)
        assert victim.wait(timeout=10) == -signal.SIGKILL and survivor.poll() is None
    assert killed_at and 30 <= killed_at[0] < 120, killed_at
    assert {str(victim.pid), str(survivor.pid)} <= set(pids.read_text().split())
    assert len(res.rows) == 120 and res.failed == 0 and len(local.rows) == 120
    assert (tmp_path / "dask" / "points.csv").read_bytes() == (tmp_path / "local" / "points.csv").read_bytes()
    assert not partial.exists()
