"""Atomic file writes: a temporary file beside the target, fsync, then rename.

An interrupted run never leaves a half-written profile, trace or video under its final name.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import tempfile
from pathlib import Path

from .errors import OutputError


NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}


class NoSpaceError(OutputError):
    """A write failed for want of space (ENOSPC) or of quota (EDQUOT); names the file (`path`)."""

    def __init__(self, what: str, path):
        self.what, self.path = what, Path(path)
        super().__init__(f"{what} while writing {path}")


def no_space(e: BaseException, path) -> NoSpaceError | None:
    """`e` as a NoSpaceError naming `path` when it is a full disk or an exceeded quota, else None.
    (Some libraries, pyarrow's writers, raise OSError with the system's message but no errno.)"""
    if isinstance(e, NoSpaceError):
        return e
    if not isinstance(e, OSError):
        return None
    what = NO_SPACE.get(e.errno) or next(
        (w for code, w in NO_SPACE.items() if e.errno is None and os.strerror(code) in str(e)), None)
    return None if what is None else NoSpaceError(what, path)


@contextlib.contextmanager
def writing(path):
    """Writes to `path` in the block: a full disk or an exceeded quota becomes one NoSpaceError naming it."""
    try:
        yield
    except OSError as e:
        err = no_space(e, path)
        if err is None or err is e:
            raise
        raise err from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds. On a
    full disk (ENOSPC, EDQUOT) the temporary is removed and NoSpaceError names `path`."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; a result file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        err = no_space(e, path)
        if err is None or err is e:
            raise
        raise err from None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory beside `path`; when the block succeeds, it replaces `path` as a
    unit (an earlier `path` is removed), with Ctrl-C held back during the swap. Leftovers of a
    killed run (`.NAME.atomsim-*` beside `path`) are removed first. On a full disk the temporary
    directory is removed and NoSpaceError names the file under `path` (not under the temporary)."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.atomsim-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.atomsim-new-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        err = no_space(e, getattr(e, "filename", None) or tmp)
        if err is None:
            raise
        raise NoSpaceError(err.what, _moved(err.path, tmp, path)) from None
    old = path.parent / f".{path.name}.atomsim-old-{os.getpid()}"
    with sigint_held(), writing(path):
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def _moved(p: Path, tmp: Path, path: Path) -> Path:
    """`p` under the temporary directory `tmp` as it is named once `tmp` becomes `path`."""
    try:
        return path / Path(p).relative_to(tmp)
    except ValueError:
        return Path(p)


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


def dumps_json(obj, path=None) -> str:
    """Deterministic JSON: sorted keys, fixed indentation, newline at the end. A non-finite number
    (JSON has none) is refused with OutputError naming `path` (the file being written) and the field."""
    try:
        return json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as e:
        bad = None if "Out of range float" not in str(e) else next(
            ((parts, x) for parts, x in numbers(obj) if isinstance(x, float) and not math.isfinite(x)), None)
        if bad is None:
            raise
        raise OutputError(f"{path if path is not None else '(JSON)'}: field '{field_path(bad[0])}': not a finite "
                          f"number ({bad[1]}); not written (JSON holds no NaN or infinity)") from None


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, dumps_json(obj, path))


def numbers(obj, parts=()):
    """(path parts, value) of every number (not bool) in a JSON-like value: keys and list indices."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from numbers(v, parts + (k,))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from numbers(v, parts + (i,))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield parts, obj


def field_path(parts) -> str:
    """Path parts as messages show them: `modules["decoder/fp32"].ops.caption.latency_s["1"].median`."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).isidentifier():
            out += ("." if out else "") + str(p)
        else:
            out += f"[{json.dumps(str(p))}]"
    return out


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
