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
