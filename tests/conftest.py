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


@pytest.fixture(scope="session")
def et_store(tmp_path_factory):
    """Every tiny module under both ExecuTorch backends, exported into a store once per session
    (tests/test_executorch*.py); the seconds each build took are in EXPORT_SECONDS."""
    import time
    pytest.importorskip("executorch")
    from atomsim import models

    store = tmp_path_factory.mktemp("et-store")
    for q in models.EXECUTORCH_BACKENDS:
        for m in models.MODELS:
            t0 = time.perf_counter()
            models.build("tiny", m, q, store=store)
            EXPORT_SECONDS[f"{m}/{q}"] = round(time.perf_counter() - t0, 1)
    print(f"ExecuTorch exports (s): {EXPORT_SECONDS}")
    return store
