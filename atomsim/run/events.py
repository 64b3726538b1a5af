"""The run's event log: one JSON line per step start and end, per load's storage reads and per
memory sample, flushed as it is written, so that when the kernel kills a run (out of memory) the
parent still holds its trace up to the kill (`atomsim run --ram-limit`, limit.py).

    log = EventLog(path); log.write(kind="start", step="encode:0", t_s=1.2)
    trace, running, last_t = trace_from_events(plan, read_events(path), source="measured")
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from ..schema.trace import BREAKDOWN, Trace


class EventLog:
    def __init__(self, path):
        self.path = Path(path)
        self.f = open(self.path, "w", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, **record) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:
            if not self.f.closed:
                self.f.write(line)
                self.f.flush()

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
