"""Freeing a module returns its memory (small preset, fp32): RSS after free within 10% of before load."""
from __future__ import annotations

import os
import sys

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


ARENA_PROBE = """
import ctypes, os, sys, threading
import atomsim
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
start = threading.Barrier(8)
def work():
    start.wait()
    for _ in range(200):
        libc.free(libc.malloc(1 << 20))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print(os.environ["MALLOC_ARENA_MAX"], flush=True)
libc.malloc_stats()   # glibc: one 'Arena N:' block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
def test_importing_atomsim_caps_malloc_arenas_at_one_unless_set_before():
    """8 threads malloc at once: under the cap (set by `import atomsim`, for this process through
    mallopt and for its children through the environment) they share 1 arena; with
    MALLOC_ARENA_MAX=8 set beforehand, glibc gives them more (the check can fail)."""
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}

    def arenas(**extra):
        p = subprocess.run([sys.executable, "-c", ARENA_PROBE], capture_output=True, text=True, env={**env, **extra})
        assert p.returncode == 0, p.stderr
        return p.stdout.strip(), p.stderr.count("Arena ")
    assert arenas() == ("1", 1)
    value, n = arenas(MALLOC_ARENA_MAX="8")
    assert value == "8" and n > 2


MMAP_PROBE = """
import ctypes, os
import atomsim
libc = ctypes.CDLL(None)
class Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype, libc.malloc.restype, libc.free.argtypes = Mallinfo2, ctypes.c_void_p, [ctypes.c_void_p]
def mapped(size):   # is a buffer of `size` bytes served by its own mmap (glibc's hblks)?
    before = libc.mallinfo2().hblks
    p = libc.malloc(size)
    n = libc.mallinfo2().hblks - before
    libc.free(p)
    return n
print(os.environ["MALLOC_MMAP_THRESHOLD_"], mapped(8 << 20), mapped(64 << 20))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_importing_atomsim_pins_the_mmap_threshold_unless_set_before():
    """An 8 MiB buffer comes from the heap under the pinned threshold (32 MiB: no longer sliding
    with what the process freed before), 64 MiB from its own mapping; with the threshold set
    beforehand at glibc's start value (128 KiB) the 8 MiB buffer is mapped (the check can fail)."""
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}

    def probe(**extra):
        p = subprocess.run([sys.executable, "-c", MMAP_PROBE], capture_output=True, text=True, env={**env, **extra})
        assert p.returncode == 0, p.stderr
        return p.stdout.split()
    assert probe() == [str(32 << 20), "0", "1"]
    assert probe(MALLOC_MMAP_THRESHOLD_="131072") == ["131072", "1", "1"]
