import os
import shutil

import pytest
from filelock import FileLock

from atomsim.process import pin_measurement_process, quiet_import_noise

# the tests load, run and measure modules in this process too: set it up as the `atomsim` command
# does (huge pages, malloc arenas and mmap threshold; before any test imports torch)
pin_measurement_process()
quiet_import_noise()


def shared_dir(tmp_path_factory, name: str, make) -> "os.PathLike":
    """A directory `make(dir)` fills once for the whole test run: in this process, or under
    pytest-xdist (`-n 2`, the README's command) by the first worker that asks for it while the
    others wait on a file lock (pytest-xdist's documented pattern: the workers' temporary
    directories share a parent). A build that failed or was interrupted is made again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    d = base / name
    with FileLock(f"{d}.lock"):
        if not (d / ".made").exists():
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            make(d)
            (d / ".made").touch()
    return d


def _build_tiny(store) -> None:
    from atomsim import models
    for m in models.MODELS:
        for q in models.BACKENDS:
            models.build("tiny", m, q, store=store)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """The tiny preset of every model and backend, built once per test run; returns the store path."""
    return shared_dir(tmp_path_factory, "atomsim-store", _build_tiny)


# seconds each tiny export took here (2026-12-01, one process each backend): the fixture hands the
# longest out first, so that its 2 processes finish together (one process a backend: 200 s, as
# the int8 exports take twice as long)
EXPORT_COST = {"decoder/executorch-xnnpack-int8": 80, "sentence-encoder/executorch-xnnpack-int8": 51,
               "bert-decoder/executorch-xnnpack-int8": 49, "decoder/executorch-xnnpack": 42,
               "bert-decoder/executorch-xnnpack": 24, "sentence-encoder/executorch-xnnpack": 23,
               "video-encoder/executorch-xnnpack-int8": 21, "video-encoder/executorch-xnnpack": 13}


def _export(store: str, key: str) -> dict:
    """In a child process: one tiny module exported (`model/backend`); its seconds."""
    import time

    from atomsim import models
    m, quant = key.split("/")
    t0 = time.perf_counter()
    models.build("tiny", m, quant, store=store)
    return {key: round(time.perf_counter() - t0, 1)}


@pytest.fixture(scope="session")
def et_store(tmp_path_factory):
    """Every tiny module under both ExecuTorch backends, exported into a store once per session
    (tests/test_executorch*.py): the fp32 weights first, then the exports in 2 processes side by
    side, the longest first (an export is mostly one thread of tracing and lowering); the seconds
    each export took are in its export-seconds.json."""
    pytest.importorskip("executorch")
    return shared_dir(tmp_path_factory, "et-store", _build_et)


def _build_et(store) -> None:
    import json
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from atomsim import models
    for m in models.MODELS:
        models.build("tiny", m, "fp32", store=store)
    keys = sorted((f"{m}/{q}" for q in models.EXECUTORCH_BACKENDS for m in models.MODELS),
                  key=lambda k: -EXPORT_COST.get(k, 100))
    seconds = {}
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        for done in ex.map(_export, [str(store)] * len(keys), keys):
            seconds.update(done)
    (store / "export-seconds.json").write_text(json.dumps(seconds))
