"""The device fingerprint: CPU, cores and frequencies, RAM, OS, versions, threads, affinity.
Reads /proc and /sys where readable (Linux, Android/Termux); missing pieces are None.

On ARM, `core_types` names each cluster from /proc/cpuinfo's `CPU implementer` and `CPU part`
(ARM_PARTS) with its CPUs, max/min frequency and `cpu_capacity` from /sys/devices/system/cpu.
`emulation` tells a profile taken under qemu-user (whose timings mean nothing) from one taken on
the CPU itself: qemu answers /proc/self/maps with the guest's own mappings but not
/proc/thread-self/maps nor /proc/self/task/TID/maps (qemu 7.2 intercepts only /proc/self/FILE
and /proc/PID/FILE), where its interpreter `qemu-aarch64[-static]` then shows; and qemu 7.2 on
an x86 host passes the host's /proc/cpuinfo through (x86 fields on an ARM machine).
`quantized_engines` is what each backend's ops ran on, read in the processes that ran them;
`quantized_engine_default` is torch's default in a new interpreter, before atomsim switches.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import threading

from ..procfs import huge_pages


def _read(path) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


# (implementer, part) from the Main ID register, as /proc/cpuinfo prints them (ARM's and
# vendors' technical reference manuals; the kernel's arch/arm64/include/asm/cputype.h)
ARM_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd04"): "Cortex-A35", ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57", ("0x41", "0xd08"): "Cortex-A72", ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75", ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd0d"): "Cortex-A77", ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd44"): "Cortex-X1", ("0x41", "0xd46"): "Cortex-A510", ("0x41", "0xd47"): "Cortex-A710",
    ("0x41", "0xd48"): "Cortex-X2", ("0x41", "0xd49"): "Neoverse-N2", ("0x41", "0xd4b"): "Cortex-A78C",
    ("0x41", "0xd4d"): "Cortex-A715", ("0x41", "0xd4e"): "Cortex-X3", ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd80"): "Cortex-A520", ("0x41", "0xd81"): "Cortex-A720", ("0x41", "0xd82"): "Cortex-X4",
    ("0x51", "0x802"): "Kryo 385 Gold (Cortex-A75)", ("0x51", "0x803"): "Kryo 385 Silver (Cortex-A55)",
    ("0x51", "0x804"): "Kryo 485 Gold (Cortex-A76)", ("0x51", "0x805"): "Kryo 485 Silver (Cortex-A55)",
}


def cpuinfo_blocks(text: str) -> list[dict]:
    """/proc/cpuinfo as one dict per blank-line-separated block (one per CPU, plus a trailer on ARM)."""
    blocks, cur = [], {}
    for line in text.splitlines() + [""]:
        k, sep, v = line.partition(":")
        if not sep:
            if cur:
                blocks.append(cur)
            cur = {}
            continue
        cur.setdefault(k.strip(), v.strip())
    return blocks


def part_name(implementer, part) -> str | None:
    if not implementer or not part:
        return None
    return ARM_PARTS.get((implementer.lower(), part.lower()), f"implementer {implementer} part {part}")


def cpu_model(text: str | None = None) -> str | None:
    fields = {}
    for b in cpuinfo_blocks(_read("/proc/cpuinfo") or "" if text is None else text):
        for k, v in b.items():
            fields.setdefault(k, v)
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if fields.get(key):
            return fields[key]
    if fields.get("CPU implementer"):  # ARM without a model name
        return part_name(fields["CPU implementer"], fields.get("CPU part"))
    return platform.processor() or None


def _sys_int(root: str, cpu: int, leaf: str) -> int | None:
    v = _read(f"{root}/cpu{cpu}/{leaf}")
    return int(v) if v and v.isdigit() else None


def core_types(cpuinfo_text: str | None = None, sysfs: str = "/sys/devices/system/cpu") -> list[dict] | None:
    """One entry per kind of ARM core: name, CPUs, max/min kHz, cpu_capacity (None off ARM)."""
    text = _read("/proc/cpuinfo") or "" if cpuinfo_text is None else cpuinfo_text
    groups: dict[tuple, dict] = {}
    for b in cpuinfo_blocks(text):
        if "processor" not in b or not b["processor"].isdigit() or "CPU part" not in b:
            continue
        cpu = int(b["processor"])
        freq = (_sys_int(sysfs, cpu, "cpufreq/cpuinfo_max_freq"), _sys_int(sysfs, cpu, "cpufreq/cpuinfo_min_freq"))
        key = (b.get("CPU implementer"), b["CPU part"]) + freq
        g = groups.setdefault(key, {"name": part_name(b.get("CPU implementer"), b["CPU part"]),
                                    "implementer": b.get("CPU implementer"), "part": b["CPU part"], "cpus": [],
                                    "max_freq_khz": freq[0], "min_freq_khz": freq[1],
                                    "cpu_capacity": _sys_int(sysfs, cpu, "cpu_capacity")})
        g["cpus"].append(cpu)
    return sorted(groups.values(), key=lambda g: g["cpus"][0]) or None


def _maps_interpreter(text: str) -> str | None:
    for line in text.splitlines():
        path = line.split()[-1] if len(line.split()) >= 6 else ""
        if re.match(r"qemu-[a-z0-9_]+(-static)?$", os.path.basename(path)):
            return path
    return None


def detect_emulation(arch: str, cpuinfo_text: str, maps: dict[str, str]) -> dict:
    """{"emulated": bool, "evidence": [...]}: `maps` maps a path to its text (see the module doc)."""
    evidence = []
    for path, text in maps.items():
        interp = _maps_interpreter(text or "")
        if interp:
            evidence.append(f"{path} maps the emulator {interp}")
    blocks = cpuinfo_blocks(cpuinfo_text or "")
    x86 = any("vendor_id" in b or "flags" in b for b in blocks)
    arm = arch.lower() in ("aarch64", "arm64") or arch.lower().startswith("arm")
    if arm and x86:
        evidence.append(f"/proc/cpuinfo describes an x86 CPU on a {arch} machine")
    return {"emulated": bool(evidence), "evidence": evidence}


def emulation() -> dict:
    maps = {p: _read(p) for p in ("/proc/thread-self/maps", f"/proc/self/task/{threading.get_native_id()}/maps")}
    return detect_emulation(platform.machine(), _read("/proc/cpuinfo") or "", maps)


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


def fingerprint(runtime: dict | None = None, ops: dict | None = None) -> dict:
    """The device as seen from this process; `runtime` adds what the worker read inside torch in a
    new interpreter, `ops` what the processes that ran the ops saw (`ops_seen`)."""
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    d = {
        "cpu_model": cpu_model(), "arch": platform.machine(), "cores": os.cpu_count(),
        "affinity": affinity, "max_freq_khz": max_freqs_khz() or None, "core_types": core_types(),
        "emulation": emulation(), **meminfo(),
        "os": platform.platform(), "kernel": platform.release(), "hostname": platform.node(),
        "termux": bool(os.environ.get("TERMUX_VERSION") or os.environ.get("PREFIX", "").startswith("/data/data/com.termux")),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
        "loadavg": loadavg(), "huge_pages": huge_pages(),
        "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),   # both pinned (atomsim/process.py)
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }
    if runtime:
        for k in ("python", "torch", "torchao", "transformers", "safetensors",
                  "supported_engines", "num_threads", "num_interop_threads", "memray",
                  "huge_pages", "malloc_arena_max", "malloc_mmap_threshold"):   # the worker's own
            if k in runtime:
                d[k] = runtime[k]
        if "quantized_engine" in runtime:
            d["quantized_engine_default"] = runtime["quantized_engine"]
    if ops:
        d.update(ops)
    return d


def thread_cpus() -> list[int]:
    """The CPUs this process's threads last ran on (/proc/self/task/*/stat, field 39)."""
    cpus = set()
    for p in glob.glob("/proc/self/task/*/stat"):
        text = _read(p) or ""
        fields = text.rpartition(")")[2].split()
        if len(fields) > 36 and fields[36].lstrip("-").isdigit():
            cpus.add(int(fields[36]))
    return sorted(cpus)


def ops_seen(rounds: dict) -> dict:
    """From the ops rounds (key "model/quant" -> list of worker results): the engine each backend
    ran on, the affinity of those processes and the CPUs their threads were last seen on."""
    engines, affinity, cpus = {}, set(), set()
    for key, rds in rounds.items():
        quant = key.split("/", 1)[1]
        for rd in rds or ():
            if not rd:
                continue
            if rd.get("engine") is not None:
                engines.setdefault(quant, rd["engine"])
            affinity.update(rd.get("affinity") or ())
            cpus.update(rd.get("thread_cpus") or ())
    return {"quantized_engines": engines, "ops_affinity": sorted(affinity) or None,
            "ops_thread_cpus": sorted(cpus) or None}
