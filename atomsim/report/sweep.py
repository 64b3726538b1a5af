"""Sweeps: run every point of a study (atomsim.report.study), write one table and plots.

    from atomsim.report.sweep import run_sweep
    result = run_sweep("scenarios/studies/clips-pixel_5a.yaml", "out/clips", workers=2)
    result.rows          # one dict per point, in point order (read from disk as they are asked for)
    result.files         # points.csv, points.parquet, plot PNGs

Executors: in-process (`workers=1`), local worker processes (ProcessPoolExecutor, points sent in
chunks), or a Dask distributed cluster (`dask="local"` starts a LocalCluster, else an address).
Rows depend only on the point, so the table is identical whichever executor ran it.
Resuming: each finished chunk is appended to DIR/points.partial.jsonl (first line: the study's
fingerprint); a rerun with the same study skips the points found there. The final tables are
written atomically and the partial file is removed.
Memory stays flat in the number of points: a few chunks are queued per worker at a time and no
future outlives its result; rows go to the partial file as they come, where only their places
are kept (16 bytes a point); the tables are written from it row by row, and `result.rows` reads
it (kept open once removed). The study goes to each local worker once, when it starts, and to a
Dask cluster once (a task the chunks depend on), not with every chunk.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import threading
import weakref
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_path, check_writable_dir, sigint_held, writing
from .study import DEFAULT_SIMULATE, RESULT_COLUMNS, Study, load_study, run_chunk

PARTIAL = "points.partial.jsonl"
IN_FLIGHT = 4            # chunks queued per worker (thread) at a time
PARQUET_ROWS = 10_000    # rows per Parquet row group: the rows of one group are in memory at once
ERROR_KINDS = 1000       # distinct error messages counted (each point's own message would be O(points))


@dataclass
class SweepResult:
    study: Study
    rows: Sequence[dict]      # Rows: one dict per point, read back from disk
    files: list[Path] = field(default_factory=list)
    resumed: int = 0          # points taken from a partial file
    failed: int = 0           # points with an error
    oom: int = 0              # points out of memory


class Rows(Sequence):
    """A sweep's rows in point order, each read from a file when it is asked for (the file stays
    open until this object goes; its name may be gone)."""

    def __init__(self, f, starts: array, sizes: array):
        self._f, self._starts, self._sizes = f, starts, sizes
        self._lock = threading.Lock()
        weakref.finalize(self, f.close)

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"row {i} of {len(self)}")
        start, size = self._starts[i], self._sizes[i]
        if hasattr(os, "pread"):
            return json.loads(os.pread(self._f.fileno(), size, start))
        with self._lock:   # pragma: no cover - no pread
            self._f.seek(start)
            return json.loads(self._f.read(size))

    def __iter__(self) -> Iterator[dict]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other):
        return isinstance(other, Sequence) and len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __repr__(self) -> str:
        return f"<Rows: {len(self)} sweep rows>"


class Partial:
    """DIR/points.partial.jsonl: a header line, then a row a line in the order the points finished.
    Opening it keeps the rows of the same study found there (a torn line is dropped: its point
    runs again) and drops the rest; `starts`/`sizes` say where each point's line is (-1: not done)."""

    def __init__(self, path: Path, study: Study):
        self.path, n, fp = path, study.size(), study.fingerprint()
        self.starts, self.sizes = array("q", [-1]) * n, array("q", [0]) * n
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            pos = f.write((json.dumps({"study": fp, "name": study.name}) + "\n").encode())
            for i, line in _read_partial(path, fp):
                if 0 <= i < n and self.starts[i] < 0:
                    self.starts[i], self.sizes[i] = pos, len(line)
                    pos += f.write(line)
        self.pos = pos
        self.resumed = n - self.starts.count(-1)

    def pending(self, workers: int, chunk_size: int | None) -> Iterator[list[int]]:
        """The points not done, in chunks (lazily: only entries already passed change meanwhile)."""
        size = _chunk_size(self.starts.count(-1), workers, chunk_size)
        it = (i for i, s in enumerate(self.starts) if s < 0)
        while chunk := list(itertools.islice(it, size)):
            yield chunk

    def append(self, f, rows: list[dict]) -> None:
        for r in rows:
            line = (json.dumps(r) + "\n").encode()
            self.starts[r["index"]], self.sizes[r["index"]] = self.pos, len(line)
            self.pos += f.write(line)
        f.flush()

    def rows(self) -> Rows:
        missing = self.starts.count(-1)
        if missing:
            raise RuntimeError(f"{self.path}: {missing} points of the sweep got no row")
        return Rows(open(self.path, "rb"), self.starts, self.sizes)


def _read_partial(path: Path, fingerprint: str) -> Iterator[tuple[int, bytes]]:
    """(index, line) of each whole row line of a partial file of the study `fingerprint`."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        try:
            header = json.loads(f.readline() or b"{}")
        except json.JSONDecodeError:
            header = {}
        if not isinstance(header, dict) or header.get("study") != fingerprint:
            return   # another study (or a changed one, or a torn header): start over
        for line in f:
            try:
                i = int(json.loads(line)["index"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue   # a line cut short by an interruption (or torn by hand): its point runs again
            if line.endswith(b"\n"):
                yield i, line


def columns(study: Study) -> list[str]:
    return ["index", *study.fields, *RESULT_COLUMNS]


def _chunk_size(points: int, workers: int, chunk_size: int | None) -> int:
    return chunk_size or max(1, min(200, points // (max(workers, 1) * 8) or 1))


def chunks_of(indices: list[int], workers: int, chunk_size: int | None) -> list[list[int]]:
    size = _chunk_size(len(indices), workers, chunk_size)
    return [indices[i:i + size] for i in range(0, len(indices), size)]


def _executor_map(payload, chunks: Iterable[list[int]], workers, dask, simulate, processes) -> Iterator[list[dict]]:
    """Yield lists of rows as chunks finish, on the chosen executor; `chunks` is consumed as
    workers free up (IN_FLIGHT a worker), so neither chunks nor results pile up."""
    chunks = iter(chunks)
    if dask:
        yield from _dask_map(payload, chunks, workers, dask, simulate, processes)
    elif workers <= 1:
        for c in chunks:
            yield run_chunk(payload, c, simulate)
    else:
        yield from _pool_map(payload, chunks, workers, simulate)


def _pool_map(payload, chunks: Iterator[list[int]], workers: int, simulate: str) -> Iterator[list[dict]]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_start, initargs=(payload,))
    pending: set = set()
    try:
        while True:
            for c in itertools.islice(chunks, workers * IN_FLIGHT - len(pending)):
                pending.add(pool.submit(_worker_chunk, c, simulate))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            while done:
                yield done.pop().result()
    except BaseException:   # Ctrl-C (once or more), or a failed chunk: stop the workers now
        with sigint_held():
            _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


_PAYLOAD: dict | None = None   # in a local worker process: the study, sent once


def _worker_start(payload: dict) -> None:
    """A local worker: keeps the study; ignores Ctrl-C, which reaches the whole process group (the
    parent alone handles it, and stops the workers)."""
    import signal
    global _PAYLOAD
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _PAYLOAD = payload


def _worker_chunk(indices: list[int], simulate: str) -> list[dict]:
    return run_chunk(_PAYLOAD, indices, simulate)


def _stop_workers(pool) -> None:
    """Terminate a ProcessPoolExecutor's workers and wait for them and its manager thread, so that
    nothing is left running and no exit handler waits on them."""
    if hasattr(pool, "terminate_workers"):   # Python 3.14+
        pool.terminate_workers()
    else:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def _same(payload: dict) -> dict:
    return payload


def _dask_map(payload, chunks: Iterator[list[int]], workers, dask, simulate, processes) -> Iterator[list[dict]]:
    """On Dask: the study is one task the chunks depend on (each worker fetches it once; lost with a
    worker, it is recomputed); a chunk's future is released as soon as its rows are read (a worker
    keeps no result), and a new chunk sent for each one done. A cluster's own workers keep their
    profiler's history (a second of stacks at a time, for an hour): a long sweep's workers stay flat
    with DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False (benchmarks/results/sweep-100k-2026-12-03.md)."""
    import logging

    from dask import config
    from distributed import Client, LocalCluster, as_completed
    cluster = None
    if dask == "local":   # its workers without the statistical profiler (some 5-10% of a sweep's CPU here)
        with config.set({"distributed.worker.profile.enabled": False}):
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=processes,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    else:
        client = Client(dask)
    try:
        slots = max(workers, sum(client.nthreads().values()))
        study = client.submit(_same, payload, pure=False)
        running = as_completed()
        for c in itertools.islice(chunks, slots * IN_FLIGHT):
            running.add(client.submit(run_chunk, study, c, simulate, pure=False))
        for fut in running:
            rows = fut.result()
            fut.release()
            for c in itertools.islice(chunks, 1):
                running.add(client.submit(run_chunk, study, c, simulate, pure=False))
            yield rows
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


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
    partial = Partial(out / PARTIAL, study)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=study.size(), initial=partial.resumed, unit="pt", desc=f"sweep {study.name}",
                   dynamic_ncols=True)
    try:
        with writing(partial.path), open(partial.path, "ab") as f:
            for rows in _executor_map(study.payload(), partial.pending(workers, chunk_size), workers, dask,
                                      simulate, processes):
                partial.append(f, rows)
                if bar is not None:
                    bar.update(len(rows))
    finally:
        if bar is not None:
            bar.close()
    rows = partial.rows()
    tally = Tally()
    result = SweepResult(study, rows, resumed=partial.resumed)
    result.files += write_tables(study, rows, out, tally)
    result.failed, result.oom = tally.failed, tally.oom
    if tally.failed == len(rows):
        partial.path.unlink(missing_ok=True)
        reasons = tally.errors.most_common(5)
        raise ConfigError(f"{study.source}: all {len(rows)} points of study {study.name!r} failed; "
                          + "; ".join(f"{n}× {msg}" for msg, n in reasons))
    if plots:
        from .sweep_plots import plot_all
        result.files += plot_all(study, rows, out)
    partial.path.unlink(missing_ok=True)
    return result


@dataclass
class Tally:
    """What writing the table saw: the Python types of each column, the errors, the points out of memory."""
    kinds: dict = field(default_factory=dict)
    errors: Counter = field(default_factory=Counter)
    failed: int = 0
    oom: int = 0

    def add(self, row: dict, cols: list[str], vals: list) -> None:
        for c, v in zip(cols, vals):
            self.kinds[c].add(type(v))
        self.oom += bool(row.get("oom"))
        if row.get("error"):
            self.failed += 1
            if row["error"] in self.errors or len(self.errors) < ERROR_KINDS:
                self.errors[row["error"]] += 1


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (dict, list)):   # a grid value that is a mapping (`changes`) or a list: as JSON
        return json.dumps(v, sort_keys=True)
    return v


def write_tables(study: Study, rows: Iterable[dict], out: Path, tally: Tally | None = None, *,
                 cols: list[str] | None = None, stem: str = "points", parquet: bool = True) -> list[Path]:
    """<stem>.csv and (with pyarrow) <stem>.parquet of `cols` (default: the study's), row by row;
    `tally` is filled as the rows go."""
    tally = Tally() if tally is None else tally
    files = [out / f"{stem}.csv"]
    cols = columns(study) if cols is None else cols
    for c in cols:
        tally.kinds.setdefault(c, set())
    with atomic_path(files[0]) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            vals = [r.get(c) for c in cols]
            tally.add(r, cols, vals)
            w.writerow([_cell(v) for v in vals])
        f.flush()
        os.fsync(f.fileno())
    from importlib.util import find_spec
    if parquet and find_spec("pyarrow") is not None:   # without pyarrow: the csv alone
        files.append(_write_parquet(out / f"{stem}.parquet", cols, rows, tally.kinds))
    return files


def _parquet_type(kinds: set):
    """A column's cell function and Arrow type from the Python types found in it: a mapping or a list
    as JSON (with the column's floats as their repr); a column of mixed types (ints and floats
    apart) as text; ints with floats as floats."""
    import pyarrow as pa
    kinds = kinds - {type(None)}
    first = (lambda v: v)
    if kinds & {dict, list}:
        first = _cell
        kinds = {str if k in (dict, list, float) else k for k in kinds}
    if len(kinds) > 1 and not kinds <= {int, float}:
        return (lambda v: str(first(v))), pa.string()
    if kinds == {int, float}:
        return (lambda v: float(v)), pa.float64()
    arrow = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    if not kinds:
        return first, pa.null()
    kind = kinds.pop()
    return (first, arrow[kind]) if kind in arrow else ((lambda v: str(first(v))), pa.string())


def _write_parquet(path: Path, cols: list[str], rows: Iterable[dict], kinds: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    typed = {c: _parquet_type(kinds.get(c, set())) for c in cols}
    schema = pa.schema([(c, t) for c, (_, t) in typed.items()])
    it = iter(rows)
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as w:
            while True:
                batch = list(itertools.islice(it, PARQUET_ROWS))
                if not batch:
                    break
                w.write_table(pa.table({c: pa.array([None if (v := r.get(c)) is None else cell(v) for r in batch],
                                                    type=t) for c, (cell, t) in typed.items()}, schema=schema))
                del batch   # before the next is read: one batch in memory at a time
    return path


def read_csv_rows(path: str | Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
