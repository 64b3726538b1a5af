"""Freeing a module returns its memory (small preset, fp32): RSS after free within 10% of before load."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("model", ["decoder", "video-encoder"])
def test_free_returns_memory(tmp_path_factory, model):
    import gc

    import torch

    from atomsim import models
    from atomsim.run.executor import Executor  # noqa: F401 - the runner's free path is Module.free
    from atomsim.run.memory import rss_bytes
    store = tmp_path_factory.mktemp("small-store")
    models.build("small", model, "fp32", store=store)
    # warm the code paths once so that imports and allocator arenas are not counted as retained
    m = models.load("small", model, "fp32", store=store)
    ops = {"decoder": lambda m: m.caption(m.example_inputs("caption")[0], beam=2, tokens=4),
           "video-encoder": lambda m: m.encode(torch.randn(2, 3, 224, 224))}
    ops[model](m)
    m.free()
    del m
    gc.collect()
    models.malloc_trim()
    before = rss_bytes()
    m = models.load("small", model, "fp32", store=store)
    ops[model](m)
    loaded = rss_bytes()
    m.free()
    del m
    after = rss_bytes()
    assert loaded > before
    assert after <= before * 1.10, f"RSS {before / 1e6:.0f} MB -> loaded {loaded / 1e6:.0f} -> freed {after / 1e6:.0f}"
