"""Freeing a module returns its memory (small preset, fp32): RSS after free within 10% of before load."""
from __future__ import annotations

import os
import sys
from pathlib import Path

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


# what a measuring process's entry point runs first (atomsim/process.py); `import atomsim` alone sets nothing
PIN = "from atomsim.process import pin_measurement_process; pin_measurement_process()"
SETTINGS = ("THP_MEM_ALLOC_ENABLE", "MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_")

ARENA_PROBE = """
import ctypes, os, sys, threading
{prologue}
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
print(os.environ.get("MALLOC_ARENA_MAX"), flush=True)
libc.malloc_stats()   # glibc: one 'Arena N:' block per arena, on stderr
"""


def clean_env(**extra) -> dict:
    """This environment without the settings (the test process has them: conftest.py), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, **extra}


def arenas(prologue: str = PIN, **extra) -> tuple[str, int]:
    """(MALLOC_ARENA_MAX as the probe saw it, arenas 8 threads mallocing at once ended up in)."""
    import subprocess
    p = subprocess.run([sys.executable, "-c", ARENA_PROBE.format(prologue=prologue)], capture_output=True,
                       text=True, env=clean_env(**extra))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1], p.stderr.count("Arena ")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc arenas")
def test_pinning_caps_malloc_arenas_at_one_unless_set_before():
    """8 threads malloc at once: under the cap (set by pin_measurement_process, for this process
    through mallopt and for its children through the environment) they share 1 arena; with
    MALLOC_ARENA_MAX=8 set beforehand, glibc gives them more (the check can fail)."""
    assert arenas() == ("1", 1)
    value, n = arenas(MALLOC_ARENA_MAX="8")
    assert value == "8" and n > 2


MMAP_PROBE = """
import ctypes, os
{prologue}
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
print(os.environ.get("MALLOC_MMAP_THRESHOLD_"), mapped(8 << 20), mapped(64 << 20))
"""


def mmap_probe(prologue: str = PIN, **extra) -> list[str]:
    import subprocess
    p = subprocess.run([sys.executable, "-c", MMAP_PROBE.format(prologue=prologue)], capture_output=True,
                       text=True, env=clean_env(**extra))
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()[-1].split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_pinning_fixes_the_mmap_threshold_unless_set_before():
    """An 8 MiB buffer comes from the heap under the pinned threshold (32 MiB: no longer sliding
    with what the process freed before), 64 MiB from its own mapping; with the threshold set
    beforehand at glibc's start value (128 KiB) the 8 MiB buffer is mapped (the check can fail)."""
    assert mmap_probe() == [str(32 << 20), "0", "1"]
    assert mmap_probe(MALLOC_MMAP_THRESHOLD_="131072") == ["131072", "1", "1"]


IMPORT_ALL = ("import os, atomsim, atomsim.cli, atomsim.sim, atomsim.run, atomsim.profile, atomsim.models, "
              "atomsim.validate, atomsim.report, atomsim.procfs, atomsim.pagecache, atomsim.process")


def test_importing_atomsim_leaves_the_process_as_it_was():
    """No setting in the environment, no mallopt: `import atomsim` (and its packages) changes nothing."""
    import subprocess
    code = "import os, atomsim; print(os.environ.get('MALLOC_ARENA_MAX'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr
    code = IMPORT_ALL + "; print([os.environ.get(k) for k in %r])" % (SETTINGS,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0 and out.stdout.strip() == "[None, None, None]", out.stderr
    if sys.platform.startswith("linux"):   # glibc's own arenas and sliding threshold
        assert arenas(IMPORT_ALL)[1] > 1
        assert mmap_probe(IMPORT_ALL) == ["None", "1", "1"]


# the entry points of the processes that measure or run, each as its own first statement: the
# `atomsim` command (`atomsim run`, also the child under --ram-limit and the validator's real
# runs; `profile`, `calibrate`, `validate`) and the profiler's worker
ENTRY_POINTS = {
    "atomsim command": "from atomsim.cli import main; main([])",   # prints the help
    "profile worker": "from atomsim.profile.worker import main; main(['--usage'])",
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_entry_points_that_measure_or_run_pin_the_process(entry):
    """Started with none of the settings, the process gets every one from its entry point."""
    import subprocess
    code = ENTRY_POINTS[entry] + "; import os; print([os.environ.get(k) for k in %r])" % (SETTINGS,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(["1", "1", str(32 << 20)])
    assert arenas(ENTRY_POINTS[entry]) == ("1", 1)
    assert mmap_probe(ENTRY_POINTS[entry]) == [str(32 << 20), "0", "1"]


def test_measuring_children_start_with_the_settings(monkeypatch, tmp_path):
    """The profiler's workers, the runner's child under a RAM limit and the validator's real runs
    are started with the settings in their environment (glibc reads them at start); a value set
    beforehand is kept."""
    from atomsim.process import measurement_env
    from atomsim.profile.workers import Workers
    for k in SETTINGS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert [measurement_env()[k] for k in SETTINGS] == ["1", "4", str(32 << 20)]
    assert all(k not in os.environ for k in ("THP_MEM_ALLOC_ENABLE", "MALLOC_MMAP_THRESHOLD_"))
    assert [Workers(fresh=True).env[k] for k in SETTINGS] == ["1", "4", str(32 << 20)]

    import subprocess

    from atomsim.errors import AtomsimError
    from atomsim.schema.scenario import load_scenario
    from atomsim.validate.suite import run_fresh
    seen = {}

    def fake_run(cmd, **kw):
        seen.update(kw.get("env") or {})
        return subprocess.CompletedProcess(cmd, 1, "", "not run")
    monkeypatch.setattr(subprocess, "run", fake_run)
    sc = load_scenario(Path(__file__).resolve().parents[1] / "scenarios" / "examples" / "assembly-tiny.yaml")
    with pytest.raises(AtomsimError, match="not run"):
        run_fresh(sc, ["v.mp4"], tmp_path)
    assert [seen.get(k) for k in SETTINGS] == ["1", "4", str(32 << 20)]
