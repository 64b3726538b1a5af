"""Plan: what a policy makes of a workload. A DAG of `load`, `run`, `free`, `wait` steps on lanes.

A `wait` step (between requests) takes `args.seconds` of wall time and no CPU.

The simulator and the runner both execute plans; neither knows about tasks or policies.
A step starts when its deps are done and every earlier step of its lane has started and finished
(a lane is one thread of execution: steps of a lane run one at a time, in plan order).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property

from ..errors import ConfigError

PLAN_VERSION = 1


@dataclass(frozen=True)
class ModuleRef:
    model: str      # a zoo model (video-encoder, decoder, ...), or the pipeline's name of another module
    quant: str      # a backend name

    @property
    def key(self) -> str:
        return f"{self.model}/{self.quant}"


@dataclass(frozen=True)
class Step:
    id: str
    kind: str                     # load | run | free | wait
    stage: str                    # load, decode, encode, caption, index, rank, script, assemble, free, think
    lane: str                     # main | video | a per-clip stage's lane (reuse-parallel)
    instance: str | None = None   # a module name of Plan.instances; None for module-less ops
    op: str | None = None         # run steps: decode, encode, caption, generate, embed, rank, assemble
    clip: int | None = None
    request: int = 0              # which request of the workload (0 for the first)
    deps: tuple[str, ...] = ()
    threads: int = 1
    args: dict = field(default_factory=dict)   # items, tokens, beam, prompt_tokens, frames, frame_size
    node: str | None = None       # the pipeline stage it runs (run steps; `decode` for the implicit decode)


@dataclass(frozen=True)
class Plan:
    task: str
    policy: str
    instances: dict[str, ModuleRef]
    steps: tuple[Step, ...]
    lanes: tuple[str, ...]
    clips: int
    workload: dict = field(default_factory=dict)
    version: int = PLAN_VERSION
    pipeline: object = field(default=None, compare=False, repr=False)   # schema.pipeline.Pipeline: the wiring

    def step(self, step_id: str) -> Step:
        return self._index[step_id]

    @cached_property
    def _index(self) -> dict[str, Step]:   # built once (the plan is frozen)
        return {s.id: s for s in self.steps}

    def reads_frames(self, step: Step) -> bool:
        """Does a run step read its clip's decoded frames? (Its pipeline stage's `in` says; a plan
        made without a pipeline: the encode op.)"""
        if step.kind != "run" or step.clip is None or step.op == "decode":
            return False
        if self.pipeline is None or step.node is None:
            return step.op == "encode"
        return "frames" in self.pipeline.stage(step.node).inputs

    def evictions(self) -> list[dict]:
        """The frees a budget policy decided, each with its reason (plan/budget.py)."""
        return [{"step": s.id, "module": s.instance, **s.args} for s in self.steps
                if s.kind == "free" and "evicted_by" in s.args]

    def to_dict(self) -> dict:
        return {
            "version": self.version, "task": self.task, "policy": self.policy, "clips": self.clips,
            "lanes": list(self.lanes), "workload": self.workload,
            "instances": {k: asdict(v) for k, v in self.instances.items()},
            "steps": [{**asdict(s), "deps": list(s.deps)} for s in self.steps],
        }

    def validate(self) -> "Plan":
        """Check the graph: unique ids, deps exist and come earlier, instances known, loads before use."""
        seen: set[str] = set()
        loaded: set[str] = set()
        for s in self.steps:
            if s.id in seen:
                raise ConfigError(f"plan {self.policy}: duplicate step id {s.id!r}")
            for d in s.deps:
                if d not in seen:
                    raise ConfigError(f"plan {self.policy}: step {s.id!r} depends on {d!r}, which is not an earlier step")
            if s.lane not in self.lanes:
                raise ConfigError(f"plan {self.policy}: step {s.id!r} on unknown lane {s.lane!r}")
            if s.instance is not None and s.instance not in self.instances:
                raise ConfigError(f"plan {self.policy}: step {s.id!r} uses unknown instance {s.instance!r}")
            if s.kind == "load":
                loaded.add(s.instance)
            elif s.kind == "free":
                loaded.discard(s.instance)
            elif s.kind == "run" and s.instance is not None and s.instance not in loaded:
                raise ConfigError(f"plan {self.policy}: step {s.id!r} runs {s.instance!r} before it is loaded")
            seen.add(s.id)
        return self
