"""atomsim: what a video-language pipeline schedule costs on a phone, before you build it.

Layers (see DESIGN.md): schema -> plan -> sim (never torch) ; models -> profile, run ;
validate, report on top.
"""
import os

__version__ = "0.1.0"

# Huge pages for torch's large CPU buffers (PyTorch's allocator aligns allocations of 2 MiB and
# more to 2 MiB and madvises them MADV_HUGEPAGE when THP_MEM_ALLOC_ENABLE=1; read once, at the
# first allocation, so it is set here, before anything of ours imports torch). Measured on the
# development VM (2-core EPYC, THP "madvise"): video-encoder/torch-dynamic-int8 encode at 1
# thread, 8 calls in each of 4 new processes: with 4 KiB pages the process medians were 0.80,
# 0.95, 1.03 and 1.20 s (which pages a process got decided its speed), with huge pages 0.77-0.81 s;
# fp32 encode 1.10-1.55 s -> 1.15-1.17 s. Profiler and runner both run under it, so figures
# taken by one hold for the other; set THP_MEM_ALLOC_ENABLE=0 beforehand to measure without.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# At most MALLOC_ARENA_MAX glibc malloc arenas (default here: 2). glibc gives each new thread
# that meets a busy arena an arena of its own, up to 8 per core, and memory a thread frees stays
# in its arena: a runner's lane threads and torch's OpenMP workers each kept the high-water mark
# of their own allocations. Measured (small fp32 reload assembly, cgroup anonymous memory during
# the first encode): 974-1009 MB with glibc's default, 818-822 MB with 1 or 2 arenas; the
# profiler's activation figures, taken in one thread, cannot see that multiplication. Phones'
# allocators (scudo, jemalloc) do not multiply it either. Set for this process (mallopt: arenas
# are made lazily, when a thread first contends) and, through the environment, for the
# processes it starts (glibc reads MALLOC_ARENA_MAX at start). Set it beforehand to change it.
def _cap_malloc_arenas() -> None:
    try:
        n = int(os.environ.setdefault("MALLOC_ARENA_MAX", "2"))
        import ctypes
        ctypes.CDLL(None).mallopt(-8, n)   # M_ARENA_MAX (malloc.h); absent outside glibc
    except (OSError, AttributeError, ValueError):   # not glibc, or a value glibc ignores too
        pass


_cap_malloc_arenas()


def _quiet_import_noise() -> None:
    """Drop two warnings every torch command printed, about nothing atomsim uses: torchao's CUDA
    kernels that a CPU build cannot load, and torch's notice on Enum pytree registration."""
    import logging

    def drop(logger: str, start: str, contains: str) -> None:
        logging.getLogger(logger).addFilter(
            lambda r: not (str(r.msg).startswith(start) and contains in str(r.getMessage())))
    drop("torchao", "Failed to load", ".so")
    drop("torch.utils._pytree", "%s is an Enum subclass", "natively supported")


_quiet_import_noise()
