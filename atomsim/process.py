"""The settings of a process that measures or runs modules for real (stdlib only).

`import atomsim` changes nothing in the process: the entry points that measure or run call
`pin_measurement_process()` first, before torch is imported and before any thread starts, so that
every such process, profiler and runner alike, runs under the same settings and a figure taken
by one holds for the other. They are: the `atomsim` command (atomsim/cli.py, every subcommand),
the profiler's worker processes (profile/worker.py, started by profile/workers.py with
`measurement_env()`), the runner's child under a RAM limit and the validator's real runs (both
the `atomsim` command, started with `measurement_env()`), and the benchmarks that load modules
in their own process. From Python, call it first (before `import torch`) to run or measure with
the figures of a profile in mind; tests/conftest.py does for the test process.

    from atomsim.process import pin_measurement_process
    pin_measurement_process()          # THP_MEM_ALLOC_ENABLE, MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_,
                                       # OMP_WAIT_POLICY
"""
from __future__ import annotations

import os

# Huge pages for torch's large CPU buffers (PyTorch's allocator aligns allocations of 2 MiB and
# more to 2 MiB and madvises them MADV_HUGEPAGE when THP_MEM_ALLOC_ENABLE=1; read once, at the
# first allocation, so it is set before anything of ours imports torch). Measured on the
# development VM (2-core EPYC, THP "madvise"): video-encoder/torch-dynamic-int8 encode at 1
# thread, 8 calls in each of 4 new processes: with 4 KiB pages the process medians were 0.80,
# 0.95, 1.03 and 1.20 s (which pages a process got decided its speed), with huge pages 0.77-0.81 s;
# fp32 encode 1.10-1.55 s -> 1.15-1.17 s. Profiler and runner both run under it, so figures
# taken by one hold for the other; set THP_MEM_ALLOC_ENABLE=0 beforehand to measure without.
#
# glibc malloc, made to behave the same in every process (a figure the profiler takes must hold
# in the runner, whatever ran before):
# - At most MALLOC_ARENA_MAX arenas (default here: 1). glibc gives each new thread that meets a
#   busy arena an arena of its own, up to 8 per core, and memory a thread frees stays in its
#   arena: a runner's lane threads and torch's OpenMP workers each kept the high-water mark of
#   their own allocations. Measured (small fp32 reload assembly, cgroup anonymous memory during
#   the first encode): 974-1009 MB with glibc's default, 818-822 MB with 1 or 2 arenas. With 2,
#   which thread landed in which arena still varied from process to process: the first small
#   fp32 encode after load (the profiler's runner state, new processes) peaked at 62-87 MB in 7
#   of 11 processes and at 145-169 MB in 4; with 1 arena, 67-83 MB in 12 of 12 (encode at 2
#   threads 0.52-0.59 s either way).
# - A fixed mmap threshold, MALLOC_MMAP_THRESHOLD_ (default here: 32 MiB, the ceiling of glibc's
#   own sliding threshold). glibc starts at 128 KiB and raises the threshold to the size of each
#   mapped buffer freed, so whether a tensor's memory goes back to the system at free depended
#   on what the process had freed before: the same first encode (small video-encoder/
#   torch-dynamic-int8) grew a fresh profiler process by 126 MB and a runner that had loaded the
#   four modules (their load temporaries freed) by about 175 MB; fp32 encode 101 MB fresh
#   against 170 MB with the threshold at its ceiling. Fixed, glibc no longer slides it: every
#   process serves buffers under 32 MiB from its heap from the start, as a long-running one does
#   (no slower: encode 0.60 s fp32, 0.50 s dyn8 at 2 threads, against 0.73 and 0.43 s).
# Set for this process (mallopt; arenas are made lazily, when a thread first contends) and,
# through the environment, for the processes it starts (glibc reads both at start: the entry
# points above start their measuring children with `measurement_env()`, so that those have
# them from their first malloc). Set either beforehand to change it. Phones' allocators (scudo,
# jemalloc) differ again (docs/running.md).
#
# OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE) instead of spinning at the end of each
# parallel region. With spinning (libgomp's default) a 2-thread op on a machine shared with other
# work waited at every region for its other thread to be scheduled again: tiny modules at 2
# threads, load average 4-9 on the 2-core VM (2026-12-03), embed 0.76-1.94 s against 0.13-0.23 s
# at 1 thread, caption 0.53-1.35 s against 0.04-0.07 s, encode 0.28 s against 0.004 s; the
# profile's 2-thread figures spread over 3-20x and the tiny validation was off by +46% (a first
# call taken at 2 threads and charged to a 1-thread script). Sleeping: 2 threads as fast as 1 for
# tiny ops (0.15 s embed, 0.04 s caption), small fp32 encode at 2 threads 1.5-2.5 s against
# 3.2-5.5 s spinning under the same load. On a quiet machine a region's wake-up costs some
# microseconds (tens per op at the small preset's sizes).
DEFAULTS = {"THP_MEM_ALLOC_ENABLE": "1", "MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
            "OMP_WAIT_POLICY": "PASSIVE"}


def measurement_env(env=None) -> dict:
    """A copy of `env` (default: this process's environment) with the settings above added where
    unset: the environment to start a process that measures or runs with."""
    out = dict(os.environ if env is None else env)
    for key, value in DEFAULTS.items():
        out.setdefault(key, value)
    return out


def pin_measurement_process() -> None:
    """Set the settings above in this process (the environment, where unset, and glibc's mallopt).
    Call it before torch is imported and before any thread starts; calling it again changes nothing."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        arenas = int(os.environ["MALLOC_ARENA_MAX"])
        mmap_threshold = int(os.environ["MALLOC_MMAP_THRESHOLD_"])
        libc.mallopt(-8, arenas)            # M_ARENA_MAX (malloc.h); absent outside glibc
        libc.mallopt(-3, mmap_threshold)    # M_MMAP_THRESHOLD: fixed, no longer sliding
    except (OSError, AttributeError, ValueError):   # not glibc, or a value glibc ignores too
        pass


_quieted = False


def quiet_import_noise() -> None:
    """Drop two warnings every torch command printed, about nothing atomsim uses: torchao's CUDA
    kernels that a CPU build cannot load, and torch's notice on Enum pytree registration.
    Installed by the command and the profiler's workers (logging filters: process-wide)."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    import logging

    def drop(logger: str, start: str, contains: str) -> None:
        logging.getLogger(logger).addFilter(
            lambda r: not (str(r.msg).startswith(start) and contains in str(r.getMessage())))
    drop("torchao", "Failed to load", ".so")
    drop("torch.utils._pytree", "%s is an Enum subclass", "natively supported")


# Warnings of the libraries that say nothing to an atomsim user (a deprecation inside torch's own
# quantized modules, a storage API transformers calls): (category, regex of the message's start).
# Filtered by the command (atomsim/cli.py) unless --verbose; the profiler's workers run with
# PYTHONWARNINGS=ignore and their stderr in a log (profile/workers.py).
LIBRARY_NOISE = (
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation"),
    (UserWarning, r"TypedStorage is deprecated"),
)
_noise_filters: list = []


def quiet_library_warnings(quiet: bool = True) -> None:
    """Ignore LIBRARY_NOISE (quiet) or show it again (not quiet: `--verbose`). Process-wide; calling
    it again installs the filters once."""
    import warnings
    for f in _noise_filters:
        if f in warnings.filters:
            warnings.filters.remove(f)
    _noise_filters.clear()
    mutated = getattr(warnings, "_filters_mutated", None)   # forget what the removed filters ignored
    if mutated is not None:
        mutated()
    if quiet:
        for category, message in LIBRARY_NOISE:
            warnings.filterwarnings("ignore", message=message, category=category)
            _noise_filters.append(warnings.filters[0])
