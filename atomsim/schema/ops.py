"""The op registry's table: every op a pipeline stage may name, what it takes and makes, and which
module kinds provide it. One table for the planner, the simulator, the runner and the profiler
(the runner's functions are in atomsim/run/ops.py, keyed by these names).

A value flowing between stages is per clip (one per clip: `frames`, features, captions) or per
request (one per request: the prompt, the queries, an index, a ranking, a generated text). The
workload provides three values: `frames` (per clip, decoded from the videos by the implicit
`decode` step, streamed through the bounded queue), `prompt` and `queries` (per request).
"""
from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("frames", "prompt", "queries")   # values the workload provides


@dataclass(frozen=True)
class Op:
    name: str
    stage: str                 # the trace's stage column (the paper's Table 3 names it so)
    kinds: tuple[str, ...]     # module kinds that provide it; () for a module-less op
    per_clip: bool | None      # True: only foreach clip; False: only foreach request; None: either
    # how its plan step waits (beyond its lane's order and cross-lane producers): `main`, for
    # the last step of the main lane; `inputs`, for the steps making its per-request inputs
    waits: tuple[str, ...] = ()
    doc: str = ""
    takes: tuple[str, ...] = ()   # the value types it reads (VALUE_TYPES), any of them an input
    makes: str = ""               # the value type of its out


OPS: dict[str, Op] = {op.name: op for op in (
    Op("decode", "decode", (), True, doc="a clip's frames from its video (implicit: every pipeline whose stages read `frames`)",
       makes="frames"),
    Op("encode", "encode", ("vision-encoder",), True, doc="frames -> features", takes=("frames",), makes="features"),
    Op("caption", "caption", ("vision2seq", "feature-captioner"), True,
       doc="frames (vision2seq) or features (feature-captioner) -> text; args beam, tokens",
       takes=("frames", "features"), makes="text"),
    Op("embed", "index", ("text-encoder",), None, doc="texts -> vectors (L2-normalized); items = the texts embedded",
       takes=("text",), makes="vectors"),
    Op("rank", "rank", (), False, doc="query vectors, candidate vectors -> candidates ranked per query (cosine)",
       takes=("vectors",), makes="ranking"),
    Op("generate", "script", ("causal-lm", "seq2seq-lm"), False, waits=("main",),
       doc="a prompt made of the stage's text inputs -> text; args tokens", takes=("text", "ranking"), makes="text"),
    Op("assemble", "assemble", (), False, waits=("inputs",),
       doc="the clips a ranking (and a script naming [clip N]) chooses -> one video", takes=("text", "ranking"),
       makes="video"),
)}
# the type of each workload value; a stage's out has its op's `makes`
SOURCE_TYPES = {"frames": "frames", "prompt": "text", "queries": "text"}
# what a caption op reads, by the kind of the module that runs it
CAPTION_TAKES = {"vision2seq": "frames", "feature-captioner": "features"}

# Module kinds and the ops each provides. A built-in module of the zoo has the kinds of its model.
KINDS: dict[str, tuple[str, ...]] = {
    "vision-encoder": ("encode",), "vision2seq": ("caption",), "feature-captioner": ("caption",),
    "causal-lm": ("generate",), "seq2seq-lm": ("generate",), "text-encoder": ("embed",),
}
BUILTIN_KINDS: dict[str, tuple[str, ...]] = {
    "video-encoder": ("vision-encoder",),
    "decoder": ("feature-captioner", "causal-lm"),      # the Llama decoder: captions from features, and text
    "bert-decoder": ("feature-captioner",),
    "sentence-encoder": ("text-encoder",),
}
HF_KINDS = ("vision-encoder", "vision2seq", "causal-lm", "seq2seq-lm", "text-encoder")
PTE_KINDS = ("vision-encoder", "text-encoder")

TEMPLATE_TOKENS = 16       # instruction text around the captions in a generate stage's prompt
WORDS_TO_TOKENS = 1.3      # tokens per word of a user's text


def ops_of_kinds(kinds) -> tuple[str, ...]:
    return tuple(dict.fromkeys(op for k in kinds for op in KINDS[k]))


def builtin_ops(model: str) -> tuple[str, ...]:
    """The ops of a zoo model (atomsim.models.specs.OPS agrees: tests/test_models.py)."""
    return ops_of_kinds(BUILTIN_KINDS[model])
