"""The few /proc and libc calls the models, the profiler and the runner share (stdlib only;
Linux and Android, each a harmless no-op where unavailable)."""
from __future__ import annotations

import ctypes
import ctypes.util
import os


def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (`/proc/self/clear_refs` with 5, Linux >= 4.0). False where not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def read_hwm() -> int | None:
    """VmHWM in bytes: peak RSS since the process started or since the last reset_hwm()."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def io_counters() -> dict:
    """/proc/self/io (read_bytes: from storage; rchar: through read syscalls). {} if unreadable."""
    out = {}
    try:
        with open("/proc/self/io") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = int(v)
    except (OSError, ValueError):
        pass
    return out


def malloc_trim() -> bool:
    """Give freed heap back to the OS (glibc); False where unavailable (bionic, musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = getattr(libc, "malloc_trim", None)
        if fn is None:
            return False
        fn(0)
        return True
    except OSError:
        return False


def huge_pages() -> dict:
    """Whether torch's large buffers may live on huge pages: the kernel's transparent huge page
    mode and torch's THP_MEM_ALLOC_ENABLE (set by atomsim.process.pin_measurement_process unless set before)."""
    mode = None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
        mode = text[text.index("[") + 1:text.index("]")] if "[" in text else text.strip()
    except (OSError, ValueError):
        pass
    env = os.environ.get("THP_MEM_ALLOC_ENABLE")
    return {"kernel_thp": mode, "torch_thp_alloc": env,
            "in_use": mode in ("always", "madvise") and env not in (None, "", "0")}
