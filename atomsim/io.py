"""Atomic file writes: a temporary file beside the target, fsync, then rename.

An interrupted run never leaves a half-written profile, trace or video under its final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from .errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; a result file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; when the block succeeds, it replaces `path` as a
    unit (an earlier `path` is removed), with Ctrl-C held back during the swap. Leftovers of a
    killed run (`.NAME.atomsim-*` beside `path`) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.atomsim-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.atomsim-new-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.parent / f".{path.name}.atomsim-old-{os.getpid()}"
    with sigint_held():
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def sigint_held():
    """Delay SIGINT until the block ends (it is then raised as usual)."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    except (AttributeError, ValueError, OSError):   # pragma: no cover - no POSIX signal masks
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()   # read once, at import: os.umask is process-wide, not thread-safe


def _umask() -> int:
    return _UMASK


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def dumps_json(obj) -> str:
    """Deterministic JSON: sorted keys, fixed indentation, newline at the end."""
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, dumps_json(obj))


def check_writable_dir(path) -> Path:
    """Fail before any work when an output directory cannot be created or written."""
    if str(path) == "":
        raise OutputError("output directory '': empty (give a directory, e.g. --out out/run)")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output directory {str(path)!r}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {str(path)!r}: {e.strerror or e}") from e
    try:
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".atomsim-probe-", delete=True)
        probe.close()
    except OSError as e:
        raise OutputError(f"cannot create files in output directory {str(path)!r}: {e.strerror or e}") from e
    return path


def check_writable_file(path) -> Path:
    """Fail before any work when an output file cannot be written (it is a directory, its
    directory cannot be written)."""
    if str(path) == "":
        raise OutputError("output file '': empty (give a file name, e.g. --out out/profile.json)")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"output file {str(path)!r}: is a directory (give a file name inside it, "
                          f"e.g. {str(path / 'profile.json')!r})")
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    return path
