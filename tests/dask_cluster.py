"""A Dask cluster of separate processes on 127.0.0.1, for the sweep's tests and
benchmarks/sweep_speed.py (which imports it from here)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def dask_cluster(tmp: Path, workers: int, env: dict | None = None, cwd: Path | None = None):
    """A Dask scheduler and `workers` workers (one thread each, no nanny: a killed one stays dead),
    each its own process on 127.0.0.1 with ports chosen free by the system; `env` added to the
    processes' environment. Yields (address, scheduler process, worker processes); all stopped on
    leaving, the workers first (a worker outliving its scheduler waits to reconnect)."""
    sf = tmp / f"scheduler-{time.monotonic_ns()}.json"
    dask = [sys.executable, "-m", "dask"]
    log = open(tmp / "dask.log", "ab")
    env = {**os.environ, **(env or {})}
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sf)], stdout=log, stderr=subprocess.STDOUT, env=env)]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not sf.exists():
            assert procs[0].poll() is None, (tmp / "dask.log").read_text()
            time.sleep(0.05)
        time.sleep(0.2)   # the file written whole
        address = json.loads(sf.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs += [subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1",
                                    "--no-dashboard", "--memory-limit", "0", "--name", f"w{i}"],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd) for i in range(workers)]
        from distributed import Client
        with Client(address, timeout=120) as c:
            c.wait_for_workers(workers, timeout=120)
        yield address, procs[0], procs[1:]
    finally:
        for group in (procs[1:], procs[:1]):
            for p in group:
                p.terminate()
            for p in group:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        log.close()
