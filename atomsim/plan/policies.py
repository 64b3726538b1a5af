"""The policies (DESIGN.md, paper fig. 2). Each is one function: scenario, clip count -> Plan.

Every policy shares two things:
- clips streamed: `decode:i` (lane `video`) decodes clip i's frames ahead of the encoder, at
  most `queue_size` clips of frames resident (decode:i waits for encode:i-q, which releases
  clip i-q's frames);
- requests: the workload's requests run one after another on the same clips, each behind a
  `wait` step of `think_s` (`r<k>/` prefixes the step ids of request k >= 1). Each request runs
  the whole pipeline (decode, encode, caption, ...); `reload` loads and frees per request
  ("each prompt restarts the model-loading cycle"), the other policies load once and keep.

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
        self.r = 0          # the request whose steps are being added

    def id(self, name: str) -> str:
        """The step id of `name` in the current request."""
        return name if self.r == 0 else f"r{self.r}/{name}"

    def text(self):
        """The current request's prompt (or query list for retrieval)."""
        return self.w.request_texts(self.r)

    def threads(self, lane: str) -> int:
        return getattr(self.sc.threads, lane)

    def add(self, name, kind, stage, lane="main", instance=None, op=None, clip=None, deps=(), **args) -> str:
        """Append a step of the current request; `name` and `deps` are ids (see `id`)."""
        threads = 1 if kind != "run" or lane == "video" else self.threads(lane)
        sid = self.id(name)
        self.steps.append(Step(id=sid, kind=kind, stage=stage, lane=lane, instance=instance, op=op, clip=clip,
                               deps=tuple(dict.fromkeys(d for d in deps if d)), threads=threads, args=args,
                               request=self.r))
        self.last[lane] = sid
        return sid

    def load(self, role, lane="main", deps=()):
        return self.add(f"load:{role}", "load", "load", lane, instance=role, deps=deps)

    def free(self, role, lane="main", deps=()):
        return self.add(f"free:{role}", "free", "free", lane, instance=role, deps=deps)

    def decode(self, i, deps=()):
        """Clip i's frames, decoded ahead of the encoder: at most queue_size clips in flight."""
        q = self.w.queue_size
        return self.add(f"decode:{i}", "run", "decode", "video", op="decode", clip=i,
                        deps=(self.id(f"encode:{i - q}") if i >= q else None, *deps),
                        frames=self.w.frames_per_clip, frame_size=self.w.frame_size)

    def encode(self, i, lane="main", deps=()):
        return self.add(f"encode:{i}", "run", "encode", lane, "video-encoder", "encode", i,
                        (self.id(f"decode:{i}"), *deps), frames=self.w.frames_per_clip, frame_size=self.w.frame_size)

    def caption(self, i, role, lane="main", deps=()):
        return self.add(f"caption:{i}", "run", "caption", lane, role, "caption", i, (self.id(f"encode:{i}"), *deps),
                        beam=self.w.beam, tokens=self.w.caption_tokens)

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

    def plan(self) -> Plan:
        workload = self.w.model_dump(mode="json")
        return Plan(task=self.w.task, policy=self.policy, instances=self.instances, steps=tuple(self.steps),
                    lanes=self.lanes, clips=self.n, workload=workload)


def prompt_tokens(b: Builder, captions: int, text: str) -> int:
    return TEMPLATE_TOKENS + int(len(text.split()) * 1.3) + captions * b.w.caption_tokens


def clips(b: Builder, encode_lane: str, caption_role: str, caption_lane: str, queue: int | None = None) -> None:
    """decode, encode and caption every clip; with `queue`, encode i waits for caption i-queue
    (the bounded queue of clip features between the parallel lanes)."""
    for i in range(b.n):
        b.decode(i, deps=(b.start(),) if i == 0 else ())   # later clips follow on the video lane
        wait = (b.id(f"caption:{i - queue}"),) if queue and i >= queue else ()
        b.encode(i, encode_lane, deps=wait)
        b.caption(i, caption_role, caption_lane)


def tail(b: Builder, lm: str, before_index=(), after_index=(), before_lm=(), after_lm=(),
         lm_lane="main", deps=()) -> None:
    """The stages after captioning, per task. `before_*`/`after_*` add loads and frees (reload)."""
    w = b.w
    captions = [b.id(f"caption:{i}") for i in range(b.n)]
    if w.task in ("retrieval", "assembly", "qa"):
        for fn in before_index:
            fn()
        b.add("index", "run", "index", "main", "sentence-encoder", "embed", deps=(*captions, *deps), items=b.n)
        what = {"retrieval": "queries", "assembly": "prompt", "qa": "question"}[w.task]
        n_texts = len(b.text()) if w.task == "retrieval" else 1
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
          prompt_tokens=prompt_tokens(b, n_caps, b.text()), tokens=w.script_tokens)
    for fn in after_lm:
        fn()
    if w.task == "assembly":
        b.add("assemble", "run", "assemble", "main", op="assemble", deps=(b.id(name),), items=k)


def needs_text_encoder(sc: Scenario) -> bool:
    return sc.workload.task != "summarization"


def roles_for(sc: Scenario, roles: dict[str, str]) -> dict[str, str]:
    """The roles a task uses: no text encoder for summarization, no script LM for retrieval."""
    return {r: m for r, m in roles.items()
            if (r != "sentence-encoder" or needs_text_encoder(sc)) and (r != "script-lm" or sc.workload.task != "retrieval")}


def reload(sc: Scenario, n: int) -> Plan:
    b = Builder(sc, n, roles_for(sc, BASELINE_ROLES), ("main", "video"))
    for _ in b.requests():
        b.load("video-encoder", deps=(b.start(),))
        b.load("caption-decoder")
        clips(b, "main", "caption-decoder", "main")
        b.free("video-encoder")
        b.free("caption-decoder")
        tail(b, "script-lm",
             before_index=[lambda: b.load("sentence-encoder")], after_index=[lambda: b.free("sentence-encoder")],
             before_lm=[lambda: b.load("script-lm")], after_lm=[lambda: b.free("script-lm")])
    return b.plan()


def _resident(sc: Scenario, n: int, roles: dict[str, str], caption_role: str, lm_role: str) -> Plan:
    b = Builder(sc, n, roles_for(sc, roles), ("main", "video"))
    for role in b.instances:
        b.load(role)
    for _ in b.requests():
        clips(b, "main", caption_role, "main")
        tail(b, lm_role)
    b.r = 0
    for role in b.instances:
        b.free(role)
    return b.plan()


def reuse_serial(sc: Scenario, n: int) -> Plan:
    return _resident(sc, n, REUSE_ROLES, "decoder", "decoder")


def baseline_resident(sc: Scenario, n: int) -> Plan:
    return _resident(sc, n, BASELINE_ROLES, "caption-decoder", "script-lm")


def reuse_parallel(sc: Scenario, n: int) -> Plan:
    b = Builder(sc, n, roles_for(sc, REUSE_ROLES), ("main", "video", "encoder", "decoder"))
    # Loads one after another (one storage device; the runner loads one module at a time, and
    # the paper's reuse loading time is the sum of the modules'), but the encoder starts on
    # clip 0 as soon as it is loaded, while the decoder is still loading.
    prev = b.load("video-encoder", "encoder")
    prev = b.load("decoder", "decoder", deps=(prev,))
    if needs_text_encoder(sc):
        b.load("sentence-encoder", "main", deps=(prev,))
    for _ in b.requests():
        # bounded queue: clip i's features wait for room, i.e. caption i-q has finished
        clips(b, "encoder", "decoder", "decoder", queue=sc.workload.queue_size)
        tail(b, "decoder", lm_lane="decoder")
    last = b.steps[-1].id
    b.r = 0
    for role in b.instances:
        b.free(role, "main", deps=(last,))
    return b.plan()
