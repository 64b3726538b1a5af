import pytest


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """The tiny preset of every model and backend, built once per session; returns the store path."""
    from atomsim import models

    store = tmp_path_factory.mktemp("atomsim-store")
    for m in models.MODELS:
        for q in models.BACKENDS:
            models.build("tiny", m, q, store=store)
    return store


EXPORT_SECONDS: dict = {}


def _export_all(store: str, quant: str) -> dict:
    """In a child process: every tiny module exported as `quant`; seconds per module."""
    import time

    from atomsim import models
    out = {}
    for m in models.MODELS:
        t0 = time.perf_counter()
        models.build("tiny", m, quant, store=store)
        out[f"{m}/{quant}"] = round(time.perf_counter() - t0, 1)
    return out


@pytest.fixture(scope="session")
def et_store(tmp_path_factory):
    """Every tiny module under both ExecuTorch backends, exported into a store once per session
    (tests/test_executorch*.py): the fp32 weights first, then one process per backend side by
    side (an export is mostly one thread of tracing and lowering; on 2 cores this halves the
    fixture); the seconds each export took are in EXPORT_SECONDS."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    pytest.importorskip("executorch")
    from atomsim import models

    store = tmp_path_factory.mktemp("et-store")
    for m in models.MODELS:
        models.build("tiny", m, "fp32", store=store)
    with ProcessPoolExecutor(len(models.EXECUTORCH_BACKENDS), mp_context=multiprocessing.get_context("spawn")) as ex:
        for done in ex.map(_export_all, [str(store)] * len(models.EXECUTORCH_BACKENDS), models.EXECUTORCH_BACKENDS):
            EXPORT_SECONDS.update(done)
    print(f"ExecuTorch exports (s): {EXPORT_SECONDS}")
    return store
