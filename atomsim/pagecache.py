"""Page-cache probes the profiler, the runner and the validator share (stdlib only, beside
procfs.py): evict files with posix_fadvise(POSIX_FADV_DONTNEED) and check residency with
mincore(2) through ctypes. Portable Linux/Android (x86_64, aarch64); every call is guarded and
reports None where the OS does not allow it."""
from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

_libc = None


def _lib():
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return _libc or None


def evict(paths) -> bool:
    """Ask the kernel to drop the files' clean pages from the page cache. True if every call succeeded."""
    if not hasattr(os, "posix_fadvise"):
        return False
    ok = True
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            ok = False
            continue
        try:
            os.fdatasync(fd) if hasattr(os, "fdatasync") else None
        except OSError:
            pass
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            ok = False
        finally:
            os.close(fd)
    return ok


def resident_fraction(paths) -> float | None:
    """Fraction of the files' pages in the page cache (mincore), None where unavailable."""
    lib = _lib()
    if lib is None or not hasattr(lib, "mincore"):
        return None
    page = mmap.PAGESIZE
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    total = resident = 0
    for p in paths:
        try:
            size = os.path.getsize(p)
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            return None
        try:
            if size == 0:
                continue
            addr = lib.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr in (None, ctypes.c_void_p(-1).value):
                return None
            try:
                n = (size + page - 1) // page
                vec = (ctypes.c_ubyte * n)()
                if lib.mincore(addr, size, vec) != 0:
                    return None
                resident += sum(b & 1 for b in vec)
                total += n
            finally:
                lib.munmap(addr, size)
        finally:
            os.close(fd)
    return resident / total if total else 0.0


def evict_checked(paths) -> dict:
    """Evict and report {'requested', 'before', 'after', 'evicted'} (evicted None when unknown)."""
    before = resident_fraction(paths)
    ok = evict(paths)
    after = resident_fraction(paths)
    evicted = None if after is None else (ok and after < 0.05)
    return {"requested": ok, "before": before, "after": after, "evicted": evicted}


def touch(paths, chunk: int = 8 << 20) -> int:
    """Read the files once so that they are in the page cache; returns bytes read."""
    n = 0
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while True:
                b = f.read(chunk)
                if not b:
                    break
                n += len(b)
    return n


@contextmanager
def scratch_file(directory, size: int, prefix: str, chunk: bytes):
    """A file of about `size` bytes (whole `chunk`s, at least one) written to disk (fsync) in
    `directory`; yields (path, bytes); removed afterwards. For timing storage and page-cache reads."""
    from .io import writing
    with writing(Path(directory) / f"{prefix}*"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with writing(name), os.fdopen(fd, "wb") as f:   # a full disk: one line naming the file
            for _ in range(max(1, size // len(chunk))):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        yield name, os.path.getsize(name)
    finally:
        os.unlink(name)
