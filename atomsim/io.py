"""Atomic file writes: a temporary file beside the target, fsync, then rename.

An interrupted run never leaves a half-written profile, trace or video under its final name.
"""
from __future__ import annotations

import contextlib
import json
import os
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
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".atomsim-probe-", delete=True)
        probe.close()
    except OSError as e:
        raise OutputError(f"cannot write to output directory {str(path)!r}: {e.strerror or e}") from e
    return path


def check_writable_file(path) -> Path:
    """Fail before any work when an output file's directory cannot be written."""
    path = Path(path)
    check_writable_dir(path.parent if str(path.parent) else Path("."))
    return path
