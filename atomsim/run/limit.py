"""`atomsim run --ram-limit SIZE`: the run in a child process inside a fresh memory cgroup.

    outcome = run_limited("scenarios/user/caption-search.yaml", ["a.mp4"], "out/", 600_000_000)
    outcome["outcome"]      # completed | oom-killed

The parent creates the cgroup (v2: `memory.max`, `memory.swap.max` = 0; v1:
`memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` = the same, where present), evicts the
plan's weight files from the page cache (so that the run's own reads of them are charged to it),
starts `atomsim run` inside it (the child joins before it imports anything), watches it, and
removes the cgroup in every case: completed, killed, interrupted, failed. When the kernel kills
the child (out of memory), the parent writes `summary.json` and `trace.json` from the child's
event log (events.py): the steps finished, the step running and the time of the kill.

What a limit counts (docs/fidelity-ram.md): everything the kernel charges to the cgroup, i.e. the
run's anonymous memory (heap, tensors: the weights are read into it) plus the page cache of the
files it reads first (weights, videos). Page cache is taken back before the kernel kills, so it
decides speed (cold re-reads), not the outcome. Shared libraries that other processes read first
(torch, Python) stay charged to those: the simulator leaves the runtime's file pages out of the
charge in the same way (`sim.engine.uncharged_baseline`), and charges the runner's decoder process
(run/decoder.py) where the profile measured it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..errors import AtomsimError, ConfigError

CGROUP_ROOT = Path(os.environ.get("ATOMSIM_CGROUP_ROOT", "/sys/fs/cgroup"))
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30,
         "k": 10**3, "m": 10**6, "g": 10**9}
MIN_LIMIT = 64 * 10**6   # below any Python + torch runtime


class CgroupError(AtomsimError):
    """No memory cgroup can be created here."""


def parse_size(text: str, device_ram: int | None = None, option: str = "--ram-limit") -> int:
    """'1.5GB', '1500MB', '1.5GiB', '1500000000' or 'device' (the scenario device's RAM) -> bytes."""
    t = str(text).strip().lower()
    if t == "device":
        if device_ram is None:
            raise ConfigError(f"{option} device: no device RAM known here")
        return int(device_ram)
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", t)
    if not m or m.group(2) not in UNITS:
        raise ConfigError(f"{option} {text!r}: not a size (examples: 1.5GB, 1500MB, 1.5GiB, 1500000000, device)")
    n = int(float(m.group(1)) * UNITS[m.group(2)])
    if n <= 0:
        raise ConfigError(f"{option} {text!r}: must be more than zero")
    return n


def _write(path: Path, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _counter(text: str | None, key: str) -> int:
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return 0


class MemoryCgroup:
    """A child memory cgroup with a hard limit and no swap. `create`, `join` (in the child),
    `peak_bytes`, `oom_kills`, `remove`."""

    def __init__(self, path: Path, version: int):
        self.path, self.version = path, version

    @classmethod
    def find_parent(cls) -> tuple[Path, int]:
        v1 = CGROUP_ROOT / "memory"
        if (v1 / "memory.limit_in_bytes").exists() and os.access(v1, os.W_OK):
            return v1, 1
        controllers = _read(CGROUP_ROOT / "cgroup.controllers")
        if controllers is not None and "memory" in controllers.split() and os.access(CGROUP_ROOT, os.W_OK):
            sub = CGROUP_ROOT / "cgroup.subtree_control"
            if "memory" not in (_read(sub) or "").split():
                try:
                    _write(sub, "+memory")
                except OSError:
                    pass
            if "memory" in (_read(sub) or "").split():
                return CGROUP_ROOT, 2
        raise CgroupError(
            f"--ram-limit needs a memory cgroup this process may create: cgroup v1 at {v1} or cgroup v2 "
            f"at {CGROUP_ROOT} with the memory controller, writable (run as root, or start atomsim inside "
            "`systemd-run --user --scope -p MemoryMax=SIZE -p MemorySwapMax=0` and leave out --ram-limit)")

    @classmethod
    def create(cls, limit_bytes: int, name: str | None = None) -> "MemoryCgroup":
        parent, version = cls.find_parent()
        path = parent / (name or f"atomsim-{os.getpid()}-{time.monotonic_ns()}")
        try:
            path.mkdir()
            cg = cls(path, version)
            if version == 1:
                _write(path / "memory.limit_in_bytes", limit_bytes)
                if (path / "memory.memsw.limit_in_bytes").exists():
                    _write(path / "memory.memsw.limit_in_bytes", limit_bytes)   # no swap on top
                _write(path / "memory.swappiness", 0)
            else:
                _write(path / "memory.max", limit_bytes)
                if (path / "memory.swap.max").exists():
                    _write(path / "memory.swap.max", 0)
        except OSError as e:
            try:
                path.rmdir()
            except OSError:
                pass
            raise CgroupError(f"cannot set up memory cgroup {path}: {e}") from None
        return cg

    def join(self) -> None:
        """Move the calling process into the cgroup (the child calls it before exec)."""
        _write(self.path / "cgroup.procs", os.getpid())

    def peak_bytes(self) -> int | None:
        name = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        text = _read(self.path / name)
        return int(text) if text and text.strip().isdigit() else None

    def oom_kills(self) -> int:
        if self.version == 1:
            return _counter(_read(self.path / "memory.oom_control"), "oom_kill")
        return _counter(_read(self.path / "memory.events"), "oom_kill")

    def pids(self) -> list[int]:
        return [int(p) for p in (_read(self.path / "cgroup.procs") or "").split()]

    def remove(self) -> None:
        """Kill what is left inside, then remove the directory."""
        for _ in range(100):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.05)
        raise CgroupError(f"could not remove memory cgroup {self.path}")


def build_plan_modules(sc, policy, store) -> list[str]:
    """Build (if needed: building is not the run) every module the scenario's plan loads; their
    weight files. The plan's modules do not depend on the clip count."""
    from ..models import sources
    from ..plan import make_plan
    plan = make_plan(sc, policy, clips=1)
    files = set()
    for name, ref in plan.instances.items():
        sources.build(plan.pipeline, name, ref, sc.models.preset, store)
        files.update(str(p) for p in sources.weight_files(plan.pipeline, name, ref, sc.models.preset, store))
    return sorted(files)


def check_limit(limit_bytes: int, sc) -> None:
    """Refuse a limit below the runtime baseline (the scenario's profile's, else MIN_LIMIT)."""
    floor, what = MIN_LIMIT, "the smallest Python + torch runtime"
    if sc.profile:
        try:
            from ..schema.profile import load_profile
            prof = load_profile(sc.profile)
            floor = prof.baseline_anon_bytes or prof.baseline_rss_bytes
            what = f"the runtime baseline of profile {sc.profile}"
        except AtomsimError:
            pass
    if limit_bytes < floor:
        raise ConfigError(f"--ram-limit {limit_bytes / 1e6:.0f} MB is below {what} ({floor / 1e6:.0f} MB): "
                          "no run could start in it")


def run_limited(scenario_path, videos, out_dir, limit_bytes: int, policy=None, store=None, extra_args=(),
                timeout_s: float | None = None) -> dict:
    """Run the scenario in a child process inside a memory cgroup of `limit_bytes`; returns the
    summary (written to out_dir/summary.json in every outcome but an error)."""
    from .. import models
    from ..io import check_writable_dir
    from ..pagecache import evict
    from ..process import measurement_env
    from ..schema.scenario import load_scenario
    out_dir = check_writable_dir(out_dir)
    sc = load_scenario(scenario_path)
    policy = policy or sc.policy
    check_limit(limit_bytes, sc)
    MemoryCgroup.find_parent()   # a clear error before any work
    store = Path(store) if store else models.default_store()
    evicted = evict(build_plan_modules(sc, policy, store))
    events = out_dir / ".events.jsonl"
    cmd = [sys.executable, "-m", "atomsim", "run", str(scenario_path), "--videos", *map(str, videos),
           "--out", str(out_dir), "--policy", policy, "--store", str(store), "--events", str(events), *extra_args]
    cg = MemoryCgroup.create(limit_bytes)
    t_start = time.time()
    old_term = _term_as_interrupt()
    try:
        child = subprocess.Popen(cmd, preexec_fn=cg.join, env=measurement_env())   # pinned from its start
        try:
            rc = child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            rc = child.wait()
            raise AtomsimError(f"the run under --ram-limit {limit_bytes} did not end within {timeout_s} s") from None
        except KeyboardInterrupt:
            _stop(child)
            raise
        record = {"ram_limit_bytes": int(limit_bytes), "cgroup_version": cg.version,
                  "cgroup_peak_bytes": cg.peak_bytes(), "oom_kills": cg.oom_kills(), "evicted_weights": evicted,
                  "exit_status": rc, "wall_s": round(time.time() - t_start, 3), "ended_epoch": time.time()}
    finally:
        cg.remove()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    try:
        if record["oom_kills"] or rc == -signal.SIGKILL:
            return _killed_summary(sc, policy, out_dir, events, record)
        if rc == 130 or rc == -signal.SIGINT:
            raise KeyboardInterrupt
        if rc != 0:
            raise AtomsimError(f"the run under --ram-limit failed (exit status {rc}; its error is above)")
        return _completed_summary(out_dir, record)
    finally:
        events.unlink(missing_ok=True)


def _term_as_interrupt():
    """SIGTERM stops a limited run as Ctrl-C does (child stopped, cgroup removed); returns the
    previous handler (None off the main thread, where handlers cannot be set)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise KeyboardInterrupt
    return signal.signal(signal.SIGTERM, handler)


def _stop(child) -> None:
    """Ctrl-C reaches the child too (same process group), SIGTERM does not: interrupt it, give
    it a moment to exit, then kill it."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _completed_summary(out_dir: Path, record: dict) -> dict:
    import json

    from ..io import atomic_write_json
    summary = json.loads((out_dir / "summary.json").read_text())
    summary.update(record, outcome="completed")
    atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _killed_summary(sc, policy, out_dir: Path, events: Path, record: dict) -> dict:
    """summary.json and trace.json of a run the kernel killed, from its event log: the steps that
    finished, the memory samples, the steps running at the kill and its time (since the run's t0)."""
    from ..io import atomic_write_json
    from ..plan import make_plan
    from ..schema.trace import summary_dict, write_trace
    from .events import read_events, trace_from_events
    recs = read_events(events)
    t0 = next((r for r in recs if r.get("kind") == "t0"), None)
    n = int(t0["clips"]) if t0 else sc.workload.clip_count()
    plan = make_plan(sc, policy, clips=n)
    trace, running, last_t = trace_from_events(plan, recs, scenario=sc.name, preset=sc.models.preset, clips=n)
    killed_t = record["ended_epoch"] - t0["epoch"] if t0 else None
    summary = summary_dict(trace, scenario=sc.name, oom=True, extra={
        **record, "outcome": "oom-killed", "killed_steps": running,
        "killed_at_s": None if killed_t is None else round(killed_t, 3),
        "killed_before_first_step": t0 is None, "clips": n, "requests": sc.workload.request_count(),
        "preset": sc.models.preset,
        "loads": [{k: v for k, v in r.items() if k != "kind"} for r in recs if r.get("kind") == "load"]})
    summary["oom_event"] = {"step": running[0] if running else None, "t_s": summary["killed_at_s"],
                            "limit_bytes": record["ram_limit_bytes"], "cgroup_peak_bytes": record["cgroup_peak_bytes"]}
    write_trace(out_dir, trace, summary)
    atomic_write_json(out_dir / "results.json", {"outcome": "oom-killed", "scenario": sc.name, "policy": policy})
    return summary
