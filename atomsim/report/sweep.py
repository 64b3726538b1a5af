"""Sweeps: run every point of a study (atomsim.report.study), write one table and plots.

    from atomsim.report.sweep import run_sweep
    result = run_sweep("scenarios/studies/clips-pixel_5a.yaml", "out/clips", workers=2)
    result.rows          # one dict per point, sorted by point index
    result.files         # points.csv, points.parquet, plot PNGs

Executors: in-process (`workers=1`), local worker processes (ProcessPoolExecutor, points sent in
chunks), or a Dask distributed cluster (`dask="local"` starts a LocalCluster, else an address).
Rows depend only on the point, so the table is identical whichever executor ran it.
Resuming: each finished chunk is appended to DIR/points.partial.jsonl (first line: the study's
fingerprint); a rerun with the same study skips the points found there. The final tables are
written atomically and the partial file is removed.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_path, atomic_write_text, check_writable_dir, sigint_held, writing
from .study import DEFAULT_SIMULATE, RESULT_COLUMNS, Study, load_study, run_chunk

PARTIAL = "points.partial.jsonl"


@dataclass
class SweepResult:
    study: Study
    rows: list[dict]
    files: list[Path] = field(default_factory=list)
    resumed: int = 0          # points taken from a partial file


def columns(study: Study) -> list[str]:
    return ["index", *study.fields, *RESULT_COLUMNS]


def chunks_of(indices: list[int], workers: int, chunk_size: int | None) -> list[list[int]]:
    if chunk_size is None:
        chunk_size = max(1, min(200, len(indices) // (max(workers, 1) * 8) or 1))
    return [indices[i:i + chunk_size] for i in range(0, len(indices), chunk_size)]


def _read_partial(path: Path, fingerprint: str) -> dict[int, dict]:
    if not path.exists():
        return {}
    done = {}
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("study") != fingerprint:
        return {}   # another study (or a changed one, or a torn header): start over
    for line in lines[1:]:
        try:
            row = json.loads(line)
            done[int(row["index"])] = row
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue   # a line cut short by an interruption (or torn by hand): its points run again
    return done


def _executor_map(payload, chunks, workers, dask, simulate, processes):
    """Yield lists of rows as chunks finish, on the chosen executor."""
    if dask:
        import logging
        from distributed import Client, LocalCluster, as_completed
        cluster = None
        if dask == "local":
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=processes,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            client = Client(dask)
        try:
            futures = client.map(run_chunk, [payload] * len(chunks), chunks, [simulate] * len(chunks), pure=False)
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    if workers <= 1:
        for c in chunks:
            yield run_chunk(payload, c, simulate)
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_ignores_sigint)
    try:
        futures = [pool.submit(run_chunk, payload, c, simulate) for c in chunks]
        for fut in as_completed(futures):
            yield fut.result()
    except BaseException:   # Ctrl-C (once or more), or a failed chunk: stop the workers now
        with sigint_held():
            _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _worker_ignores_sigint() -> None:
    """Ctrl-C reaches the whole process group: the parent alone handles it (and stops the workers)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers and wait for them and its manager thread, so that
    nothing is left running and no exit handler waits on them."""
    if hasattr(pool, "terminate_workers"):   # Python 3.14+
        pool.terminate_workers()
    else:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def run_sweep(study: Study | str | Path, out_dir: str | Path, *, workers: int = 1, dask: str | None = None,
              progress: bool = False, chunk_size: int | None = None, simulate: str = DEFAULT_SIMULATE,
              plots: bool = True, processes: bool = True) -> SweepResult:
    """Run every point of `study`, resuming from DIR/points.partial.jsonl; write tables and plots."""
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"--chunk-size: must be at least 1, got {chunk_size}")
    if not isinstance(study, Study):
        study = load_study(study)
    out = check_writable_dir(out_dir)
    partial = out / PARTIAL
    fp = study.fingerprint()
    done = _read_partial(partial, fp)
    resumed = len(done)
    todo = [i for i in range(study.size()) if i not in done]
    with writing(partial), open(partial, "w") as f:   # rewrite: header + the rows kept (drops a torn last line)
        f.write(json.dumps({"study": fp, "name": study.name}) + "\n")
        for i in sorted(done):
            f.write(json.dumps(done[i]) + "\n")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=study.size(), initial=resumed, unit="pt", desc=f"sweep {study.name}", dynamic_ncols=True)
    try:
        with writing(partial), open(partial, "a") as f:
            for rows in _executor_map(study.payload(), chunks_of(todo, workers, chunk_size), workers, dask,
                                      simulate, processes):
                for r in rows:
                    done[r["index"]] = r
                    f.write(json.dumps(r) + "\n")
                f.flush()
                if bar is not None:
                    bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
    rows = [done[i] for i in range(study.size())]
    result = SweepResult(study, rows, resumed=resumed)
    result.files += write_tables(study, rows, out)
    failed = [r for r in rows if r["error"]]
    if len(failed) == len(rows):
        partial.unlink(missing_ok=True)
        reasons = Counter(r["error"] for r in failed).most_common(5)
        raise ConfigError(f"{study.source}: all {len(rows)} points of study {study.name!r} failed; "
                          + "; ".join(f"{n}× {msg}" for msg, n in reasons))
    if plots:
        from .sweep_plots import plot_all
        result.files += plot_all(study, rows, out)
    partial.unlink(missing_ok=True)
    return result


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list)):   # a grid value that is a mapping (`changes`) or a list: as JSON
        return json.dumps(v, sort_keys=True)
    return v


def to_csv(study: Study, rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(study)
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def write_tables(study: Study, rows: list[dict], out: Path) -> list[Path]:
    files = [out / "points.csv"]
    atomic_write_text(files[0], to_csv(study, rows))
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return files
    cols = columns(study)
    data = {}
    for c in cols:
        vals = [r.get(c) for r in rows]
        if any(isinstance(v, (dict, list)) for v in vals):
            vals = [None if v is None else _cell(v) for v in vals]
        kinds = {type(v) for v in vals if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            vals = [None if v is None else str(v) for v in vals]   # a grid mixing types: as text
        elif kinds == {int, float}:
            vals = [None if v is None else float(v) for v in vals]
        data[c] = vals
    table = pa.table(data)
    with atomic_path(out / "points.parquet") as tmp:
        pq.write_table(table, tmp)
    files.append(out / "points.parquet")
    return files


def read_csv_rows(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
