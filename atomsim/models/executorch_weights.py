"""XNNPACK's weight cache, switched on for this process before the first program loads.

Each method of a program has its own XNNPACK delegate, which packs the weights it uses when the
method loads, so the Llama decoder's two methods (`forward`, `beam`) held two packed copies
(small fp32: RSS +620 MB per method loaded, +1239 MB for both). XNNPACK's backend keeps a weight
cache that packs each named weight once for every method of the process (the runtime option
`weight_cache_enabled` of `XnnpackBackend`, off by default), which an app on the C++ runtime sets
with `executorch::runtime::set_option`. executorch 1.5.1's Python bindings expose no backend
option, so this calls that function of `libexecutorch.so` (the library the bindings link) through
ctypes, with `BackendOption` laid out as in 1.5.1's `runtime/backend/options.h`: key char[64],
then a `std::variant<bool, int, std::array<char, 256>>` (value at 64, index byte at 320), 324 bytes;
`Span<BackendOption>` is passed as (pointer, length). Measured with the cache on (small fp32
decoder): both methods +910 MB instead of +1528 MB (program read included), the same logits, and
the memory returned when the program is freed. Checked after setting: `get_option` must read the
option back as true, else the cache counts as off (`enabled()` says which).
"""
from __future__ import annotations

import ctypes
import threading
from pathlib import Path

_SET = "_ZN10executorch7runtime10set_optionEPKcNS0_4SpanINS0_13BackendOptionEEE"
_GET = "_ZN10executorch7runtime10get_optionEPKcNS0_4SpanINS0_13BackendOptionEEE"
BACKEND, KEY = b"XnnpackBackend", b"weight_cache_enabled"
_lock = threading.Lock()
_state: dict = {}


class _Option(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char * 64), ("value", ctypes.c_ubyte * 256), ("index", ctypes.c_ubyte),
                ("pad", ctypes.c_ubyte * 3)]


def _call(lib, name: str, option: _Option) -> int:
    f = getattr(lib, name)
    f.argtypes, f.restype = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t], ctypes.c_uint32
    return int(f(BACKEND, ctypes.addressof(option), 1))


def _switch_on() -> tuple[bool, str]:
    from importlib.metadata import version
    from executorch.extension.pybindings import _C
    if version("executorch") != "1.5.1" or ctypes.sizeof(_Option) != 324:
        return False, f"executorch {version('executorch')}: BackendOption's layout is known for 1.5.1 only"
    lib = ctypes.CDLL(str(Path(_C.__file__).resolve().parents[2] / "lib" / "libexecutorch.so"))
    on = _Option(key=KEY, index=0)
    on.value[0] = 1
    err = _call(lib, _SET, on)
    back = _Option(key=KEY, index=0)
    got = _call(lib, _GET, back)
    if err or got or back.index != 0 or back.value[0] != 1:
        return False, f"set_option returned {err}, get_option {got} (value {back.value[0]}, index {back.index})"
    return True, "on"


def share_packed_weights() -> bool:
    """Switch XNNPACK's weight cache on, once per process (before a program loads); True if on."""
    with _lock:
        if "on" not in _state:
            try:
                _state["on"], _state["why"] = _switch_on()
            except (OSError, AttributeError) as e:   # no library or symbol: the runtime's own packing
                _state["on"], _state["why"] = False, f"{type(e).__name__}: {e}"
        return _state["on"]


def enabled() -> tuple[bool | None, str]:
    """(on, why): None before any program loaded in this process."""
    return _state.get("on"), _state.get("why", "no program loaded yet")
