"""Trace: what happened when a plan was executed, simulated or measured, in one format.

`trace.json` is Chrome trace event JSON (opens in Perfetto and chrome://tracing): one track per
lane ("X" events, µs), memory as a counter ("C" events). `summary.json` holds end-to-end time,
per-stage totals, the peak memory and its breakdown, and out-of-memory events. Optional, in a
measured run's summary only: `decoder_peak_bytes`, the peak RSS of the runner's decoder process
(run/decoder.py), apart from `peak_bytes` (the runner's own process); absent in simulated
summaries and in runs that decode in the lane thread (ATOMSIM_DECODE_IN_THREAD=1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..io import atomic_write_json
from .plan import Plan, Step

TRACE_VERSION = 1
BREAKDOWN = ("weights", "inputs", "activations", "load_temporaries", "baseline")


@dataclass
class Span:
    step: str
    stage: str
    lane: str
    start_s: float
    end_s: float
    instance: str | None = None
    op: str | None = None
    clip: int | None = None
    kind: str = "run"
    why: dict | None = None   # a budget policy's eviction: evicted_by, for, freed_bytes, reload_s

    @property
    def dur_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class Trace:
    """Spans of steps and memory samples of one execution of one plan."""

    source: str                       # simulated | measured
    task: str
    policy: str
    lanes: tuple[str, ...]
    spans: list[Span] = field(default_factory=list)
    memory: list[tuple[float, dict]] = field(default_factory=list)   # (t_s, breakdown bytes)
    meta: dict = field(default_factory=dict)

    @classmethod
    def for_plan(cls, plan: Plan, source: str, **meta) -> "Trace":
        return cls(source=source, task=plan.task, policy=plan.policy, lanes=plan.lanes, meta=dict(meta))

    def add_step(self, step: Step, start_s: float, end_s: float) -> None:
        why = dict(step.args) if step.kind == "free" and "evicted_by" in step.args else None
        self.spans.append(Span(step.id, step.stage, step.lane, start_s, end_s, step.instance, step.op, step.clip,
                               step.kind, why))

    def add_memory(self, t_s: float, **breakdown: int) -> None:
        self.memory.append((t_s, {k: int(breakdown.get(k, 0)) for k in BREAKDOWN}))

    # ---- derived figures
    @property
    def e2e_s(self) -> float:
        return max((s.end_s for s in self.spans), default=0.0) - min((s.start_s for s in self.spans), default=0.0)

    def stage_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for s in self.spans:
            totals[s.stage] = totals.get(s.stage, 0.0) + s.dur_s
        return dict(sorted(totals.items()))

    def peak(self) -> tuple[int, dict]:
        """Peak of the summed memory counter and its breakdown at that moment."""
        best = (0, {k: 0 for k in BREAKDOWN})
        for _, b in self.memory:
            total = sum(b.values())
            if total > best[0]:
                best = (total, b)
        return best

    # ---- formats
    def chrome_events(self) -> list[dict]:
        tid = {lane: i + 1 for i, lane in enumerate(self.lanes)}
        events = [{"ph": "M", "pid": 1, "tid": 0, "name": "process_name",
                   "args": {"name": f"atomsim {self.source}: {self.task} / {self.policy}"}}]
        for lane, i in tid.items():
            events.append({"ph": "M", "pid": 1, "tid": i, "name": "thread_name", "args": {"name": lane}})
        for s in sorted(self.spans, key=lambda s: (s.start_s, tid.get(s.lane, 0), s.step)):
            events.append({"ph": "X", "pid": 1, "tid": tid.get(s.lane, 0), "name": s.step, "cat": s.stage,
                           "ts": round(s.start_s * 1e6, 3), "dur": round(s.dur_s * 1e6, 3),
                           "args": {"instance": s.instance, "op": s.op, "clip": s.clip, "kind": s.kind,
                                    **({"why": s.why} if s.why else {})}})
        for t, b in self.memory:
            events.append({"ph": "C", "pid": 1, "tid": 0, "name": "memory", "ts": round(t * 1e6, 3), "args": dict(b)})
        return events

    def to_chrome(self) -> dict:
        return {"traceEvents": self.chrome_events(), "displayTimeUnit": "ms",
                "otherData": {"version": TRACE_VERSION, "source": self.source, "task": self.task,
                              "policy": self.policy, "lanes": list(self.lanes), **self.meta}}

    @classmethod
    def from_chrome(cls, data: dict, source_name: str = "trace") -> "Trace":
        try:
            other = data["otherData"]
            lanes = tuple(other["lanes"])
            tr = cls(source=other["source"], task=other["task"], policy=other["policy"], lanes=lanes,
                     meta={k: v for k, v in other.items() if k not in ("version", "source", "task", "policy", "lanes")})
            for e in data["traceEvents"]:
                if e["ph"] == "X":
                    a = e.get("args", {})
                    lane = lanes[e["tid"] - 1] if 0 < e["tid"] <= len(lanes) else "main"
                    tr.spans.append(Span(e["name"], e.get("cat", ""), lane, e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6,
                                         a.get("instance"), a.get("op"), a.get("clip"), a.get("kind", "run"),
                                         a.get("why")))
                elif e["ph"] == "C" and e["name"] == "memory":
                    tr.memory.append((e["ts"] / 1e6, {k: int(e["args"].get(k, 0)) for k in BREAKDOWN}))
        except (KeyError, TypeError, IndexError) as e:
            raise ConfigError(f"{source_name}: not an atomsim trace (missing {e})") from None
        return tr


def summary_dict(trace: Trace, *, scenario: str, lower_bound_s: float | None = None, oom: bool = False,
                 oom_event: dict | None = None, extra: dict | None = None) -> dict:
    peak, breakdown = trace.peak()
    return {
        "version": TRACE_VERSION, "source": trace.source, "task": trace.task, "policy": trace.policy,
        "scenario": scenario, "e2e_s": trace.e2e_s, "lower_bound_s": lower_bound_s,
        "peak_bytes": peak, "breakdown_bytes": breakdown, "oom": oom, "oom_event": oom_event,
        "stage_totals_s": trace.stage_totals(), "steps": len(trace.spans), **(extra or {}),
    }


def write_trace(out_dir: str | Path, trace: Trace, summary: dict) -> None:
    """Write `trace.json` and `summary.json` atomically into `out_dir`."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "trace.json", trace.to_chrome())
    atomic_write_json(out_dir / "summary.json", summary)


def read_trace(out_dir: str | Path) -> tuple[Trace, dict]:
    out_dir = Path(out_dir)
    try:
        trace = Trace.from_chrome(json.loads((out_dir / "trace.json").read_text()), str(out_dir / "trace.json"))
        summary = json.loads((out_dir / "summary.json").read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"no trace in {out_dir}: {e.filename} missing") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{out_dir}: malformed trace JSON: {e}") from None
    return trace, summary
