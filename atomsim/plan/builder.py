"""What every policy shares: appending a pipeline's steps to a plan.

- clips streamed: `decode:i` (lane `video`) decodes clip i's frames ahead of the stages that read
  them, at most `queue_size` clips of frames resident (decode:i waits for the frame readers of
  clip i-q, which release clip i-q's frames);
- a per-clip stage S makes the steps `S:i`; a per-request stage the step `S`;
- requests: the workload's requests run one after another on the same clips, each behind a
  `wait` step of `think_s` (`r<k>/` prefixes the step ids of request k >= 1).

How a step waits, beyond its lane's order: for each clip step of its per-clip inputs, for the
producers of its inputs on other lanes, and as its op says (ops.py `waits`: `main`, the main
lane's last step; `inputs`, the producers of its per-request inputs). The cost arguments the
simulator scales by come from the workload and the stage's `args` (`cost_args`).
"""
from __future__ import annotations

from ..schema.ops import OPS, TEMPLATE_TOKENS, WORDS_TO_TOKENS
from ..schema.pipeline import Pipeline, Stage
from ..schema.plan import ModuleRef, Plan, Step
from ..schema.scenario import Scenario


def phases(pipe: Pipeline) -> list[list[Stage]]:
    """Consecutive per-clip stages form one phase; consecutive per-request stages with the same
    `phase` (default: the same module; a module-less stage alone) form one."""
    def key(s: Stage):
        if s.per_clip:
            return ("clips",)
        return ("phase", s.phase) if s.phase else (("module", s.module) if s.module else ("stage", s.name))
    out: list[list[Stage]] = []
    for s in pipe.stages:
        if out and key(out[-1][-1]) == key(s):
            out[-1].append(s)
        else:
            out.append([s])
    return out


class Builder:
    """Appends steps; remembers the last step of each lane for readable dependencies."""

    def __init__(self, sc: Scenario, pipe: Pipeline, n_clips: int, parallel: bool):
        self.sc, self.pipe, self.n, self.parallel = sc, pipe, n_clips, parallel
        self.policy = sc.policy
        self.w = sc.workload
        self.instances = {m: module_ref(sc, pipe, m) for m in pipe.used_modules()}
        clip_lanes = [self.stage_lane(s) for s in pipe.stages if s.per_clip] if parallel else []
        self.lanes = tuple(dict.fromkeys(("main", "video", *clip_lanes)))
        self.steps: list[Step] = []
        self.last: dict[str, str] = {}
        self.uses: dict[tuple, int] = {}    # (request, load/free name) -> times used
        self.r = 0          # the request whose steps are being added

    # ---- ids, lanes, threads
    def id(self, name: str) -> str:
        """The step id of `name` in the current request."""
        return name if self.r == 0 else f"r{self.r}/{name}"

    def module_lane(self, module: str) -> str:
        """Under reuse-parallel, the lane of the module's first per-clip stage; else main."""
        first = next((s for s in self.pipe.stages if s.per_clip and s.module == module), None)
        return (first.lane or first.module) if (self.parallel and first is not None) else "main"

    def stage_lane(self, s: Stage) -> str:
        if not self.parallel:
            return "main"
        if s.per_clip:
            return s.lane or s.module or "main"
        return self.module_lane(s.module) if s.module else "main"

    def add(self, name, kind, stage, lane="main", instance=None, op=None, clip=None, deps=(), node=None,
            **args) -> str:
        """Append a step of the current request; `name` and `deps` are ids (see `id`)."""
        threads = 1 if kind != "run" or lane == "video" else self.sc.threads.of(lane, instance)
        sid = self.id(name)
        self.steps.append(Step(id=sid, kind=kind, stage=stage, lane=lane, instance=instance, op=op, clip=clip,
                               deps=tuple(dict.fromkeys(d for d in deps if d)), threads=threads, args=args,
                               request=self.r, node=node))
        self.last[lane] = sid
        return sid

    def load(self, module, lane="main", deps=()):
        return self.add(self._nth(f"load:{module}"), "load", "load", lane, instance=module, deps=deps)

    def free(self, module, lane="main", deps=(), **why):
        """`why`: a budget policy's reason for an eviction (plan/budget.py), kept in the step's args."""
        return self.add(self._nth(f"free:{module}"), "free", "free", lane, instance=module, deps=deps, **why)

    def _nth(self, name: str) -> str:
        """`name`, or `name#k` for its k-th use in one request (reload of a module two phases use)."""
        k = self.uses[(self.r, name)] = self.uses.get((self.r, name), 0) + 1
        return name if k == 1 else f"{name}#{k}"

    # ---- requests
    def requests(self):
        """Iterate over the workload's requests; from the second on, a `wait` of think_s first,
        after the previous request's last step (so a request starts when the one before ended)."""
        for r in range(self.w.request_count()):
            if r:
                prev = self.steps[-1].id
                self.r = r
                self.add("request", "wait", "think", "main", deps=(prev,), seconds=self.w.think_s)
            yield r

    def start(self) -> str | None:
        """The step the current request's first steps wait for (its `wait`, None for the first)."""
        return self.id("request") if self.r else None

    # ---- stages
    def stages(self, stages) -> None:
        """Steps of `stages` (consecutive per-clip stages clip by clip, then per-request ones)."""
        stages = list(stages)
        block = [s for s in stages if s.per_clip]
        if block:
            self.clips(block)
        for s in stages:
            if not s.per_clip:
                self.request_stage(s)

    def clips(self, block: list[Stage]) -> None:
        """Decode and run the per-clip stages on every clip; under reuse-parallel, stage j of clip i
        waits for stage j+1 of clip i-q (the bounded queue between consecutive lanes)."""
        q = self.w.queue_size
        readers = [s for s in block if "frames" in s.inputs]
        for i in range(self.n):
            if readers:
                prior = [self.id(f"{s.name}:{i - q}") for s in readers] if i >= q else []
                self.add(f"decode:{i}", "run", "decode", "video", op="decode", clip=i,
                         deps=(*prior, self.start() if i == 0 else None), node="decode",
                         frames=self.w.frames_per_clip, frame_size=self.w.frame_size)
            for j, s in enumerate(block):
                deps = [self.id(f"decode:{i}") if v == "frames" else self.id(f"{self.pipe.producer(v).name}:{i}")
                        for v in s.inputs]
                if self.parallel and j + 1 < len(block) and i >= q:
                    deps.append(self.id(f"{block[j + 1].name}:{i - q}"))
                self.run(s, clip=i, deps=deps)

    def request_stage(self, s: Stage) -> str:
        lane, op = self.stage_lane(s), OPS[s.op]
        deps: list[str | None] = []
        for v in s.inputs:
            p = self.pipe.producer(v)
            if p is not None and p.per_clip:
                deps += [self.id(f"{p.name}:{i}") for i in range(self.n)]
        if "main" in op.waits:
            deps.append(self.last.get("main"))
        for v in s.inputs:
            p = self.pipe.producer(v)
            if p is not None and not p.per_clip and ("inputs" in op.waits or self.stage_lane(p) != lane):
                deps.append(self.id(p.name))
        return self.run(s, deps=deps)

    def run(self, s: Stage, clip: int | None = None, deps=()) -> str:
        name = s.name if clip is None else f"{s.name}:{clip}"
        return self.add(name, "run", OPS[s.op].stage, self.stage_lane(s), instance=s.module, op=s.op, clip=clip,
                        deps=deps, node=s.name, **cost_args(self, s))

    def plan(self) -> Plan:
        return Plan(task=self.pipe.name, policy=self.policy, instances=self.instances, steps=tuple(self.steps),
                    lanes=self.lanes, clips=self.n, workload=self.w.model_dump(mode="json"), pipeline=self.pipe)


def module_ref(sc: Scenario, pipe: Pipeline, name: str) -> ModuleRef:
    """A zoo module is keyed by its model (profiles, the store); another by the pipeline's name for it."""
    src = pipe.modules[name]
    if src.pte:   # a program is its own backend
        return ModuleRef(name, "pte")
    model = src.builtin or name
    return ModuleRef(model, sc.models.quant_of(model))


# ---- cost arguments: what the simulator scales a step's profiled cost by
def cost_args(b: Builder, s: Stage) -> dict:
    w, a = b.w, s.args
    if s.op == "caption":
        extra = {"frames": w.frames_per_clip, "frame_size": w.frame_size} if "frames" in s.inputs else {}
        return {**extra, "beam": int(a.get("beam", w.beam)), "tokens": int(a.get("tokens", w.caption_tokens))}
    if "frames" in s.inputs:
        return {"frames": w.frames_per_clip, "frame_size": w.frame_size}
    if s.op == "embed":   # a per-clip stage embeds its clip's value: one item an input
        return {"items": len(s.inputs) if s.per_clip else sum(size(b, v) for v in s.inputs)}
    if s.op == "rank":
        return {"items": size(b, s.inputs[-1])}
    if s.op == "generate":
        return {"prompt_tokens": prompt_tokens(b, s), "tokens": int(a.get("tokens", w.script_tokens))}
    if s.op == "assemble":
        return {"items": context_clips(b, s)}
    return {}


def size(b: Builder, value: str) -> int:
    """How many items a value holds in the current request (clips, texts, vectors)."""
    if value == "prompt":
        return 1
    if value == "queries":
        return len(b.w.request_queries(b.r))
    p = b.pipe.producer(value)
    if p.per_clip:
        return b.n
    if p.op == "embed":
        return sum(size(b, v) for v in p.inputs)
    if p.op == "rank":
        return size(b, p.inputs[0])
    return 1


def top_k(b: Builder, rank: Stage) -> int:
    return min(int(rank.args.get("top_k", b.w.top_k)), size(b, rank.inputs[-1]))


def context_clips(b: Builder, s: Stage) -> int:
    """Clips a stage's text context covers: the top-k of a ranking among its inputs (or its
    inputs' inputs), else every clip when it reads per-clip texts, else none."""
    for v in s.inputs:
        p = b.pipe.producer(v)
        if p is not None and p.op == "rank":
            return top_k(b, p)
    for v in s.inputs:
        p = b.pipe.producer(v)
        if p is not None and p.op == "generate":
            return context_clips(b, p)
    return b.n if any(b.pipe.per_clip_value(v) for v in s.inputs if v != "frames") else 0


def prompt_tokens(b: Builder, s: Stage) -> int:
    """A generate stage's prompt: an instruction, the user's text, the context clips' captions and
    earlier generated texts."""
    words = 0
    per_clip_tokens = 0
    generated = 0
    for v in s.inputs:
        p = b.pipe.producer(v)
        if v == "prompt":
            words += len(b.w.request_prompt(b.r).split())
        elif v == "queries":
            words += sum(len(q.split()) for q in b.w.request_queries(b.r))
        elif p is not None and p.per_clip and p.op == "caption":
            per_clip_tokens += int(p.args.get("tokens", b.w.caption_tokens))
        elif p is not None and p.op == "generate":
            generated += int(p.args.get("tokens", b.w.script_tokens))
    return TEMPLATE_TOKENS + int(words * WORDS_TO_TOKENS) + context_clips(b, s) * per_clip_tokens + generated
