"""Process memory figures from /proc (Linux and Android): RSS, the VmHWM high-water mark and its
reset (`/proc/self/clear_refs` with 5), the anonymous / file-backed split, and malloc_trim."""
from __future__ import annotations

import gc
import os
import resource
import threading

from ..procfs import malloc_trim, read_hwm, reset_hwm  # noqa: F401  (part of this module's API)

KB = 1024


def _kb_fields(path: str) -> dict:
    """The `Name:  N kB` lines of a /proc file, in bytes ({} if unreadable)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(":")
                parts = v.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[k] = int(parts[0]) * KB
    except OSError:
        pass
    return out


def _status() -> dict:
    return _kb_fields("/proc/self/status")


def rss() -> int:
    """Resident set size in bytes (from /proc/self/status, else ru_maxrss as a last resort)."""
    s = _status()
    if "VmRSS" in s:
        return s["VmRSS"]
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB  # pragma: no cover


def split() -> dict:
    """{'rss','anon','file'} bytes: from /proc/self/smaps_rollup, else /proc/self/status."""
    vals = _kb_fields("/proc/self/smaps_rollup")
    if "Rss" in vals and "Anonymous" in vals:
        return {"rss": vals["Rss"], "anon": vals["Anonymous"], "file": vals["Rss"] - vals["Anonymous"],
                "source": "smaps_rollup"}
    s = _status()
    anon = s.get("RssAnon")
    return {"rss": s.get("VmRSS", rss()), "anon": anon,
            "file": (s.get("RssFile", 0) + s.get("RssShmem", 0)) if anon is not None else None,
            "source": "status"}


def settle() -> None:
    gc.collect()
    malloc_trim()


def anon() -> int | None:
    """Anonymous resident bytes (RssAnon of /proc/self/status; None where the kernel lacks it)."""
    return _status().get("RssAnon")


class PeakSampler:
    """Fallback peak RSS where clear_refs is not permitted: poll RSS from a thread every `period` s."""

    def __init__(self, period: float = 0.001):
        self.period, self.peak = period, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(self.period)

    def __enter__(self):
        self.peak = rss()
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())


_POLL_ANON = r"""
import select, sys
path, period, peak, ready = "/proc/%s/status" % sys.argv[1], float(sys.argv[2]), 0, False
while True:
    try:
        with open(path) as f:
            peak = max([peak] + [int(x.split()[1]) * 1024 for x in f if x.startswith("RssAnon:")])
    except OSError:
        break
    if not ready:
        print("ready", flush=True)
        ready = True
    if select.select([sys.stdin], [], [], period)[0]:   # the parent closed stdin (or died)
        break
print(peak, flush=True)
"""


class AnonPeak:
    """Peak anonymous memory over a block: a load's temporaries without the file pages it maps
    (library code, mapped weights: they count in RSS and VmHWM while mapped, but they are page
    cache, which a RAM limit reclaims). Polled every millisecond from a small process of its own,
    which, unlike a thread, needs no GIL: an allocation made while Python holds it is seen too.
    The poller ends when the block does, or when this process dies (its stdin closes). Use where
    `anon()` is not None."""
    method = "polled-anon"

    def __init__(self, period: float = 0.001):
        self.period, self.peak = period, 0

    def __enter__(self):
        import subprocess
        import sys
        self._p = subprocess.Popen([sys.executable, "-I", "-S", "-c", _POLL_ANON, str(os.getpid()), str(self.period)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._p.stdout.readline()   # its first reading is taken
        return self

    def __exit__(self, *exc):
        out, _ = self._p.communicate()   # closes stdin: the poller prints its peak and ends
        polled = out.strip().splitlines()
        self.peak = max(int(polled[-1]) if polled and polled[-1].isdigit() else 0, anon() or 0)


class Peak:
    """Peak RSS over a block: VmHWM after a clear_refs reset, else a sampling thread.
    `.peak` bytes, `.method` 'vmhwm-reset' | 'sampled-rss'."""

    def __enter__(self):
        self._sampler = None
        if reset_hwm() and read_hwm() is not None:
            self.method = "vmhwm-reset"
        else:
            self.method = "sampled-rss"
            self._sampler = PeakSampler().__enter__()
        return self

    def __exit__(self, *exc):
        if self._sampler is not None:
            self._sampler.__exit__(*exc)
            self.peak = self._sampler.peak
        else:
            self.peak = max(read_hwm() or 0, rss())


def mapped_rss(paths) -> int | None:
    """Resident bytes of this process's mappings of the given files (/proc/self/smaps), None if unreadable."""
    want = {str(p) for p in paths}
    total, cur = 0, False
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                first = line.split(None, 1)[0]
                if "-" in first and not first.endswith(":"):
                    parts = line.split(None, 5)
                    cur = len(parts) == 6 and parts[5].strip() in want
                elif cur and first == "Rss:":
                    total += int(line.split()[1]) * KB
    except OSError:
        return None
    return total


def measure_load(load) -> tuple:
    """(what `load()` returned, {"kept_bytes", "load_temporaries_bytes"}): the anonymous memory the
    call keeps, and its temporaries: the peak during it above what it keeps (collected and
    trimmed before and after, as the profiler's figure). Run it in a process of its own (its
    imports done) for a module load's figure; `AnonPeak` needs `anon()`."""
    settle()
    before = anon()
    with AnonPeak() as pk:
        obj = load()
    settle()
    after = anon()
    return obj, {"kept_bytes": after - before, "load_temporaries_bytes": max(0, pk.peak - after)}


def measure_module_load(preset: str, model: str, quant: str, store=None) -> dict:
    """One zoo module's load measured in this process (call it in a new one: `python -c`, after
    `process.pin_measurement_process()`): its file, kept and temporary bytes, its largest tensor."""
    from .. import models
    from ..models import specs, store as st, tensorwise, zoo
    cfg = specs.arch_config(preset, model) if model != "sentence-encoder" else None
    zoo.make(model, cfg, cfg_dir=st.minilm_dir() if cfg is None else None)   # its imports, done before
    mod, figures = measure_load(lambda: models.load(preset, model, quant, store=store))
    files = models.weight_files(preset, model, quant, store=store)
    return {"module": model, "backend": quant, "preset": preset, **figures,
            "file_bytes": sum(f.stat().st_size for f in files),
            "largest_tensor_bytes": tensorwise.largest_tensor_bytes(mod.net)}


_LOAD_IN_NEW_PROCESS = ("import json, sys, warnings\n"
                        "from atomsim.process import pin_measurement_process, quiet_import_noise\n"
                        "pin_measurement_process(); quiet_import_noise(); warnings.simplefilter('ignore')\n"
                        "from atomsim.profile.memory import measure_module_load\n"
                        "print(json.dumps(measure_module_load(*sys.argv[1:])))\n")


def measure_module_load_in_new_process(preset: str, model: str, quant: str, store,
                                       timeout: float | None = None) -> dict:
    """`measure_module_load` in a new interpreter under atomsim's process settings (a load's
    figure is its process's own). Raises AtomsimError with the child's last error lines."""
    import json
    import subprocess
    import sys

    from ..errors import AtomsimError
    from ..process import measurement_env
    out = subprocess.run([sys.executable, "-c", _LOAD_IN_NEW_PROCESS, preset, model, quant, str(store)],
                         capture_output=True, text=True, env=measurement_env(), timeout=timeout)
    if out.returncode:
        raise AtomsimError(f"the load of {model}/{quant} ({preset}) failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
