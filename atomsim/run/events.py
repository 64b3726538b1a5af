"""The run's event log: one JSON line per step start and end, per load's storage reads and per
memory sample, flushed as it is written, so that when the kernel kills a run (out of memory) the
parent still holds its trace up to the kill (`atomsim run --ram-limit`, limit.py).

    log = EventLog(path); log.write(kind="start", step="encode:0", t_s=1.2)
    trace, running, last_t = trace_from_events(plan, read_events(path), source="measured")
"""
from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

from ..io import NoSpaceError, writing
from ..schema.trace import BREAKDOWN, Trace


class EventLog:
    """On a full disk the log stops (its file closed) and NoSpaceError names it: raised by `write`
    then and at each later write, except the memory sampler's (`quiet`: its thread has no caller
    to report to; the next step's record raises it)."""

    def __init__(self, path):
        self.path = Path(path)
        with writing(self.path):
            self.f = open(self.path, "w", encoding="utf-8")
        self.lock = threading.Lock()
        self.error = None

    def write(self, quiet: bool = False, **record) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:
            if self.error is None and not self.f.closed:
                try:
                    with writing(self.path):
                        self.f.write(line)
                        self.f.flush()
                except NoSpaceError as e:
                    self.error = e
                    with contextlib.suppress(OSError):
                        self.f.close()
            if self.error is not None and not quiet:
                raise self.error

    def close(self) -> None:
        with self.lock:
            self.f.close()


def read_events(path) -> list[dict]:
    """The log's records; a line torn by the kill (the last one) is dropped."""
    out = []
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def trace_from_events(plan, events: list[dict], **meta) -> tuple[Trace, list[str], float]:
    """(trace of the finished steps and memory samples, steps started but not finished, time of
    the last record)."""
    trace = Trace.for_plan(plan, "measured", **meta)
    started: dict[str, float] = {}
    last_t = 0.0
    for e in events:
        t = float(e.get("t_s", e.get("end_s", 0.0)) or 0.0)
        last_t = max(last_t, t)
        if e.get("kind") == "start":
            started[e["step"]] = t
        elif e.get("kind") == "end":
            started.pop(e["step"], None)
            trace.add_step(plan.step(e["step"]), e["start_s"], e["end_s"])
        elif e.get("kind") == "memory":
            trace.add_memory(t, **{k: e["b"].get(k, 0) for k in BREAKDOWN})
    trace.spans.sort(key=lambda s: (s.start_s, s.step))
    return trace, sorted(started, key=started.get), last_t
