"""Processor sharing in SimPy: the device's cores (`Cpu`) and its storage bandwidth (`Storage`).

SimPy has no processor-sharing resource, so this is one small event-driven class: every job has
remaining work (a fraction of itself); on every arrival and departure all jobs are advanced at
their current rates, the rates are recomputed, and one timeout is armed for the earliest
completion (stale timeouts are ignored by a generation counter). No time slicing.

CPU rule: a job asks for `threads`; when the asks sum to more than the cores, each job gets
ask x cores / total effective threads. Its rate is 1 / latency(effective threads), where
`latency` comes from the profile: measured at some thread counts, the speed-up (1/latency) is
interpolated linearly between them, flat above the largest, and linear in threads below the
smallest (half a thread -> twice the latency of one). Co-run slowdowns divide a job's rate while
the named other op runs at once (the figure measured at both jobs' thread asks, where there is one).
"""
from __future__ import annotations

from bisect import bisect_right
from typing import Callable

import simpy

EPS = 1e-12


class LatencyCurve:
    """Latency of one call as a function of (possibly fractional) threads."""

    __slots__ = ("ts", "lats", "factor")

    def __init__(self, points: dict[int, float], factor: float = 1.0):
        self.ts = sorted(points)
        self.lats = [points[t] for t in self.ts]
        self.factor = factor

    def __call__(self, threads: float) -> float:
        ts, lats = self.ts, self.lats
        if threads <= ts[0]:
            return lats[0] * ts[0] / max(threads, EPS) * self.factor
        if threads >= ts[-1]:
            return lats[-1] * self.factor
        i = bisect_right(ts, threads) - 1
        t0, t1 = ts[i], ts[i + 1]
        s0, s1 = 1.0 / lats[i], 1.0 / lats[i + 1]
        s = s0 + (s1 - s0) * (threads - t0) / (t1 - t0)
        return self.factor / s

    def fastest(self, cores: int) -> float:
        """The least latency at any thread count up to `cores` (a measured curve need not fall:
        a small op may run slower on two threads than on one)."""
        cands = [t for t in self.ts if t <= cores] + [min(float(cores), float(self.ts[-1]))]
        return min(self(t) for t in cands)

    def min_core_seconds(self, cores: int) -> float:
        """Least threads x latency over 0 < t <= cores (ends of the linear speed-up segments)."""
        cands = [t for t in self.ts if t <= cores] or [float(cores)]
        cands.append(float(cores))
        return min(t * self(t) for t in cands)


class Job:
    __slots__ = ("name", "ask", "curve", "key", "remaining", "rate", "done", "slowdown")

    def __init__(self, name, ask, curve, key, done):
        self.name, self.ask, self.curve, self.key, self.done = name, ask, curve, key, done
        self.remaining = 1.0
        self.rate = 0.0
        self.slowdown = 1.0


class Sharing:
    """Base: jobs share a capacity; subclasses set each job's rate in `_rates`."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.jobs: list[Job] = []          # arrival order: deterministic
        self.last = 0.0
        self.generation = 0

    def submit(self, job: Job):
        self._advance()
        self.jobs.append(job)
        self._rearm()
        return job.done

    def _advance(self):
        now = self.env.now
        dt = now - self.last
        if dt > 0:
            for j in self.jobs:
                j.remaining -= j.rate * dt
        self.last = now

    def _rates(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _rearm(self):
        self.generation += 1
        if not self.jobs:
            return
        self._rates()
        soonest = min(j.remaining / j.rate for j in self.jobs)
        gen = self.generation
        ev = self.env.timeout(max(soonest, 0.0))
        ev.callbacks.append(lambda _ev: self._complete(gen))

    def _complete(self, gen: int):
        if gen != self.generation:
            return
        self._advance()
        finished = [j for j in self.jobs if j.remaining <= 1e-9]
        if not finished:  # rounding: finish the closest one
            finished = [min(self.jobs, key=lambda j: j.remaining / j.rate)]
        for j in finished:
            self.jobs.remove(j)
        self._rearm()
        for j in finished:
            j.done.succeed()


class Cpu(Sharing):
    """Processor sharing over `cores`, with the profile's speed-up curves and co-run slowdowns."""

    def __init__(self, env, cores: int, corun: Callable[..., tuple[float, float] | None] | None = None):
        super().__init__(env)
        self.cores = cores
        self.corun = corun

    def run(self, name: str, threads: float, curve: LatencyCurve, key: str | None = None):
        """Event that fires when a call of latency `curve` asking `threads` has done its work."""
        if curve.factor * curve.lats[-1] <= 0:   # no work: done now, shares nothing
            return self.env.timeout(0)
        return self.submit(Job(name, float(threads), curve, key, self.env.event()))

    def _rates(self):
        total = sum(j.ask for j in self.jobs)
        scale = min(1.0, self.cores / total) if total > 0 else 1.0
        for j in self.jobs:
            slow = 1.0
            if self.corun is not None and j.key is not None:
                for o in self.jobs:
                    if o is not j and o.key is not None:
                        s = self.corun(j.key, o.key, (j.ask, o.ask))
                        if s is not None:
                            slow *= s[0]
            j.slowdown = slow
            j.rate = 1.0 / (j.curve(j.ask * scale) * slow)

    def core_seconds_busy(self) -> float:  # pragma: no cover - diagnostics
        return sum(min(j.ask, self.cores) for j in self.jobs)


class Storage(Sharing):
    """Storage read bandwidth shared equally by concurrent reads. A job's work is its time alone."""

    def read(self, name: str, seconds_alone: float):
        if seconds_alone <= 0:
            return self.env.timeout(0)
        job = Job(name, 1.0, LatencyCurve({1: max(seconds_alone, EPS)}), None, self.env.event())
        return self.submit(job)

    def _rates(self):
        n = len(self.jobs)
        for j in self.jobs:
            j.rate = 1.0 / (j.curve.lats[0] * n)
