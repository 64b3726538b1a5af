"""The policies (DESIGN.md, paper fig. 2). Each is one function: scenario, clip count -> Plan.

- reload: one stage at a time; a stage's modules are loaded before it and freed after it;
  separate models for captions (the baseline's BERT decoder, with the video encoder) and for
  scripts (a separate Llama). Paper fig. 2a.
- reuse-serial: the reuse models (video encoder, one Llama decoder, MiniLM) loaded once and kept;
  stages run one after another.
- reuse-parallel (Atom, fig. 2b): as reuse-serial, but the encoder works on clip i+1 while the
  decoder captions clip i (own lanes, own threads, a bounded queue of `queue_size` clip features).
  Modules load one after another; the encoder starts as soon as it is loaded.
- baseline-resident: the baseline's separate models all loaded up front and kept: what holding
  the caption model and the script model at once costs in RAM.
"""
from __future__ import annotations

from ..schema.plan import ModuleRef, Plan, Step
from ..schema.scenario import Scenario

REUSE_ROLES = {"video-encoder": "video-encoder", "decoder": "decoder", "sentence-encoder": "sentence-encoder"}
BASELINE_ROLES = {"video-encoder": "video-encoder", "caption-decoder": "bert-decoder",
                  "script-lm": "decoder", "sentence-encoder": "sentence-encoder"}
TEMPLATE_TOKENS = 16   # instruction text around the captions in a script/summary/answer prompt


class Builder:
    """Appends steps; remembers the last step of each lane for readable dependencies."""

    def __init__(self, scenario: Scenario, n_clips: int, roles: dict[str, str], lanes: tuple[str, ...]):
        self.sc, self.n, self.lanes = scenario, n_clips, lanes
        self.policy = scenario.policy
        self.w = scenario.workload
        self.instances = {role: ModuleRef(model, scenario.models.quant_of(model)) for role, model in roles.items()}
        self.steps: list[Step] = []
        self.last: dict[str, str] = {}

    def threads(self, lane: str) -> int:
        return getattr(self.sc.threads, lane)

    def add(self, id, kind, stage, lane="main", instance=None, op=None, clip=None, deps=(), **args) -> str:
        threads = 1 if kind != "run" else self.threads(lane)
        self.steps.append(Step(id=id, kind=kind, stage=stage, lane=lane, instance=instance, op=op, clip=clip,
                               deps=tuple(dict.fromkeys(d for d in deps if d)), threads=threads, args=args))
        self.last[lane] = id
        return id

    def load(self, role, lane="main", deps=()):
        return self.add(f"load:{role}", "load", "load", lane, instance=role, deps=deps)

    def free(self, role, lane="main", deps=()):
        return self.add(f"free:{role}", "free", "free", lane, instance=role, deps=deps)

    def encode(self, i, lane="main", deps=()):
        return self.add(f"encode:{i}", "run", "encode", lane, "video-encoder", "encode", i, deps,
                        frames=self.w.frames_per_clip, frame_size=self.w.frame_size)

    def caption(self, i, role, lane="main", deps=()):
        return self.add(f"caption:{i}", "run", "caption", lane, role, "caption", i, (f"encode:{i}", *deps),
                        beam=self.w.beam, tokens=self.w.caption_tokens)

    def plan(self) -> Plan:
        workload = self.w.model_dump(mode="json")
        return Plan(task=self.w.task, policy=self.policy, instances=self.instances, steps=tuple(self.steps),
                    lanes=self.lanes, clips=self.n, workload=workload)


def prompt_tokens(b: Builder, captions: int, text: str) -> int:
    return TEMPLATE_TOKENS + int(len(text.split()) * 1.3) + captions * b.w.caption_tokens


def tail(b: Builder, lm: str, before_index=(), after_index=(), before_lm=(), after_lm=(),
         lm_lane="main", deps=()) -> None:
    """The stages after captioning, per task. `before_*`/`after_*` add loads and frees (reload)."""
    w = b.w
    captions = [f"caption:{i}" for i in range(b.n)]
    if w.task in ("retrieval", "assembly", "qa"):
        for fn in before_index:
            fn()
        b.add("index", "run", "index", "main", "sentence-encoder", "embed", deps=(*captions, *deps), items=b.n)
        what = {"retrieval": "queries", "assembly": "prompt", "qa": "question"}[w.task]
        n_texts = len(w.queries) if w.task == "retrieval" else 1
        b.add(f"embed-{what}", "run", "index", "main", "sentence-encoder", "embed", items=n_texts)
        b.add("rank", "run", "rank", "main", op="rank", items=b.n)
        for fn in after_index:
            fn()
    if w.task == "retrieval":
        return
    k = min(w.top_k, b.n)
    name, n_caps = {"assembly": ("script", k), "qa": ("answer", k), "summarization": ("summary", b.n)}[w.task]
    for fn in before_lm:
        fn()
    b.add(name, "run", "script", lm_lane, lm, "generate", deps=(*captions, b.last.get("main"), *deps),
          prompt_tokens=prompt_tokens(b, n_caps, w.prompt), tokens=w.script_tokens)
    for fn in after_lm:
        fn()
    if w.task == "assembly":
        b.add("assemble", "run", "assemble", "main", op="assemble", deps=(name,), items=k)


def needs_text_encoder(sc: Scenario) -> bool:
    return sc.workload.task != "summarization"


def roles_for(sc: Scenario, roles: dict[str, str]) -> dict[str, str]:
    """The roles a task uses: no text encoder for summarization, no script LM for retrieval."""
    return {r: m for r, m in roles.items()
            if (r != "sentence-encoder" or needs_text_encoder(sc)) and (r != "script-lm" or sc.workload.task != "retrieval")}


def reload(sc: Scenario, n: int) -> Plan:
    b = Builder(sc, n, roles_for(sc, BASELINE_ROLES), ("main",))
    b.load("video-encoder")
    b.load("caption-decoder")
    for i in range(n):
        b.encode(i)
        b.caption(i, "caption-decoder")
    b.free("video-encoder")
    b.free("caption-decoder")
    tail(b, "script-lm",
         before_index=[lambda: b.load("sentence-encoder")], after_index=[lambda: b.free("sentence-encoder")],
         before_lm=[lambda: b.load("script-lm")], after_lm=[lambda: b.free("script-lm")])
    return b.plan()


def _resident(sc: Scenario, n: int, roles: dict[str, str], caption_role: str, lm_role: str) -> Plan:
    b = Builder(sc, n, roles_for(sc, roles), ("main",))
    for role in b.instances:
        b.load(role)
    for i in range(n):
        b.encode(i)
        b.caption(i, caption_role)
    tail(b, lm_role)
    for role in b.instances:
        b.free(role)
    return b.plan()


def reuse_serial(sc: Scenario, n: int) -> Plan:
    return _resident(sc, n, REUSE_ROLES, "decoder", "decoder")


def baseline_resident(sc: Scenario, n: int) -> Plan:
    return _resident(sc, n, BASELINE_ROLES, "caption-decoder", "script-lm")


def reuse_parallel(sc: Scenario, n: int) -> Plan:
    b = Builder(sc, n, roles_for(sc, REUSE_ROLES), ("main", "encoder", "decoder"))
    q = sc.workload.queue_size
    # Loads one after another (one storage device; the runner loads one module at a time, and
    # the paper's reuse loading time is the sum of the modules'), but the encoder starts on
    # clip 0 as soon as it is loaded, while the decoder is still loading.
    prev = b.load("video-encoder", "encoder")
    prev = b.load("decoder", "decoder", deps=(prev,))
    if needs_text_encoder(sc):
        b.load("sentence-encoder", "main", deps=(prev,))
    for i in range(n):
        # bounded queue: clip i's features wait for room, i.e. caption i-q has finished
        b.encode(i, "encoder", deps=(f"caption:{i - q}",) if i >= q else ())
        b.caption(i, "decoder", "decoder")
    tail(b, "decoder", lm_lane="decoder")
    last = b.steps[-1].id
    for role in b.instances:
        b.free(role, "main", deps=(last,))
    return b.plan()
