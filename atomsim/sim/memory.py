"""RAM accounting (process memory by category, against the device's limit) and the page cache.

Process memory = baseline RSS + weights + inputs + activations + load temporaries. What the RAM
limit charges (the memory the app cannot give back, as a memory cgroup counts it) is process
memory less `uncharged_bytes`: the runtime's shared-library pages, which are file pages that the
kernel takes back under pressure (docs/fidelity-ram.md). Out of memory: the charge exceeds the
limit. The page cache holds weight files that were read; it is not process memory, but it only
keeps files while free RAM (device RAM - process memory) allows: as the process grows, the least
recently used files are evicted first.

`peak_high` is the peak with, on top, what the engine counts as `contended` (freed heap that
lanes running at once may take from each other, engine.py): not charged, never out of memory.
"""
from __future__ import annotations

from collections import OrderedDict

from ..schema.trace import BREAKDOWN


class OutOfMemory(Exception):
    """Raised inside the simulation when process memory exceeds the device's RAM."""

    def __init__(self, event: dict):
        super().__init__(event["step"])
        self.event = event


class Memory:
    def __init__(self, limit_bytes: int, baseline_bytes: int, trace=None, clock=None, uncharged_bytes: int = 0):
        self.limit = int(limit_bytes)
        self.uncharged = int(uncharged_bytes)
        self.by = {k: 0 for k in BREAKDOWN}
        self.by["baseline"] = int(baseline_bytes)
        self.total = self.by["baseline"]     # sum(self.by.values()), kept as the parts change
        self.contended = 0                   # see engine.Engine._contend
        self.peak_high = self.total
        self.trace = trace
        self.clock = clock or (lambda: 0.0)
        self.cache = PageCache(self)
        self._record()

    @property
    def charged(self) -> int:
        return self.total - self.uncharged

    def change(self, step: str, **delta: int) -> None:
        """Apply byte changes by category; record a counter sample; raise OutOfMemory past the limit."""
        for k, v in delta.items():
            self.by[k] += int(v)
            self.total += int(v)
            if self.by[k] < 0:  # a bookkeeping bug, never a modelling outcome
                raise AssertionError(f"negative {k} memory after {step}")
        self.peak_high = max(self.peak_high, self.total + self.contended)
        self._record()
        if self.charged > self.limit:
            raise OutOfMemory({"t_s": self.clock(), "step": step, "breakdown_bytes": dict(self.by),
                               "total_bytes": self.total, "charged_bytes": self.charged, "limit_bytes": self.limit})
        self.cache.fit()

    def contend(self, nbytes: int) -> None:
        """Change the contended bytes (counted in `peak_high` only)."""
        self.contended += int(nbytes)
        if self.contended < 0:
            raise AssertionError("negative contended memory")
        self.peak_high = max(self.peak_high, self.total + self.contended)

    def _record(self) -> None:
        if self.trace is None:
            return
        t = self.clock()
        mem = self.trace.memory
        if mem and mem[-1][0] == t:   # several changes at one instant: keep the last state
            mem.pop()
        mem.append((t, dict(self.by)))   # Trace.add_memory's record (self.by has every BREAKDOWN key)

    def free_bytes(self) -> int:
        return max(0, self.limit - self.total)


class PageCache:
    """Weight files in the page cache, LRU order (oldest first)."""

    def __init__(self, memory: Memory):
        self.memory = memory
        self.files: OrderedDict[str, int] = OrderedDict()
        self.evictions = 0

    def has(self, key: str) -> bool:
        return key in self.files

    def touch(self, key: str, nbytes: int) -> None:
        """A file was read: it is (now) the most recently used cached file."""
        self.files.pop(key, None)
        self.files[key] = int(nbytes)
        self.fit()

    def fit(self) -> None:
        if not self.files:
            return
        free = self.memory.free_bytes()
        cached = sum(self.files.values())
        while self.files and cached > free:
            cached -= self.files.popitem(last=False)[1]
            self.evictions += 1
