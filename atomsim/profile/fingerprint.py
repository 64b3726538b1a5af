"""The device fingerprint: CPU, cores and frequencies, RAM, OS, versions, threads, affinity.
Reads /proc and /sys where readable (Linux, Android/Termux); missing pieces are None."""
from __future__ import annotations

import glob
import os
import platform

from ..procfs import huge_pages


def _read(path) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo") or ""
    fields = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        fields.setdefault(k.strip(), v.strip())
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU implementer"):  # ARM without a model name
        return f"ARM implementer {fields['CPU implementer']} part {fields.get('CPU part')}"
    return platform.processor() or None


def max_freqs_khz() -> dict:
    out = {}
    for p in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        v = _read(p)
        if v and v.isdigit():
            out[p.split("/")[5]] = int(v)
    return out


def meminfo() -> dict:
    out = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k] = int(parts[0]) * 1024
    return {"ram_total_bytes": out.get("MemTotal"), "ram_available_bytes": out.get("MemAvailable")}


def loadavg() -> list | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def fingerprint(runtime: dict | None = None) -> dict:
    """The device as seen from this process; `runtime` adds what the worker read inside torch."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    d = {
        "cpu_model": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
        "affinity": affinity, "max_freq_khz": max_freqs_khz() or None, **meminfo(),
        "os": platform.platform(), "kernel": platform.release(), "hostname": platform.node(),
        "termux": bool(os.environ.get("TERMUX_VERSION") or os.environ.get("PREFIX", "").startswith("/data/data/com.termux")),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
        "loadavg": loadavg(), "huge_pages": huge_pages(),
    }
    if runtime:
        for k in ("python", "torch", "torchao", "transformers", "safetensors", "quantized_engine",
                  "supported_engines", "num_threads", "num_interop_threads", "memray"):
            if k in runtime:
                d[k] = runtime[k]
    return d
