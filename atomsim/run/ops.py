"""The op registry's functions: what a `run` step does with real data, by op name (schema/ops.py
lists the ops). Each takes the step's module, its named inputs (in the stage's `in` order) and
the stage's args, and returns its output value. The profiler times the same functions for the
module-less ops.

Values between stages: tensors (frames, features), `str` (one clip's caption), `Texts` (texts
gathered from clips or given by the request), `Vectors` (embeddings of texts, remembering whose:
clip ids or the request's texts), `Ranking` (candidates ranked per query), `Generated` (a text
and the clips its prompt showed), `Assembled` (the output video).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Texts:
    items: list[str]
    clips: list[int] | None = None      # whose texts: clip ids, or None (the request's own)


@dataclass
class Vectors:
    tensor: object
    texts: Texts


@dataclass
class Ranking:
    queries: list[str]
    ranked: list[list[tuple[int, float]]]      # per query: (candidate, cosine), best first
    candidates: Texts
    top_k: int


@dataclass
class Generated:
    text: str
    clips: list[int] = field(default_factory=list)   # the clips its prompt showed, in order


@dataclass
class Assembled:
    path: str | None
    chosen: list[int]
    order_source: str


@dataclass
class Context:
    """What an op may need besides its inputs: the run's clips and workload, the output writer."""
    clips: list
    top_k: int
    request: int = 0
    assemble_fn: object = None      # (clips, name, request) -> output path
    out: str = ""                   # the stage's output name


def decode_tokens(module, ids) -> str:
    tok = getattr(module, "tokenizer", None)
    if tok is not None and hasattr(tok, "decode") and getattr(module, "model", "") != "sentence-encoder":
        try:
            return tok.decode(ids)
        except Exception:  # noqa: BLE001 - a tokenizer of another vocabulary; fall back
            pass
    return " ".join(f"w{int(i)}" for i in ids if int(i) > 2)


def as_texts(value) -> Texts:
    if isinstance(value, Texts):
        return value
    if isinstance(value, Generated):
        return Texts([value.text])
    if isinstance(value, str):
        return Texts([value])
    return Texts([str(v) for v in value])


# ---- the ops
def encode(module, inputs, args, ctx):
    return module.encode(inputs[0])


def caption(module, inputs, args, ctx) -> str:
    out = module.caption(inputs[0], beam=int(args.get("beam", 4)), tokens=int(args.get("tokens", 23)))
    return out if isinstance(out, str) else decode_tokens(module, out)


def embed(module, inputs, args, ctx) -> Vectors:
    parts = [as_texts(v) for v in inputs]
    items = [t for p in parts for t in p.items]
    clips = parts[0].clips if len(parts) == 1 else None
    return Vectors(module.embed(items), Texts(items, clips))


def rank(module, inputs, args, ctx) -> Ranking:
    """Cosine similarity of each query vector to each candidate (both L2-normalized)."""
    q, c = inputs[0], inputs[-1]
    sims = q.tensor.float() @ c.tensor.float().T
    ranked = []
    for row in sims:
        order = sorted(range(row.shape[0]), key=lambda i: (-float(row[i]), i))
        ranked.append([(i, float(row[i])) for i in order])
    return Ranking(q.texts.items, ranked, c.texts, int(args.get("top_k", ctx.top_k)))


def generate(module, inputs, args, ctx) -> Generated:
    text, clips = lm_prompt(inputs, args, len(ctx.clips))
    return Generated(module.generate(text, tokens=int(args.get("tokens", 64))), clips)


def assemble(module, inputs, args, ctx) -> Assembled:
    """The clips a script names as [clip N] among those it was shown, else those in their order."""
    g = next((v for v in inputs if isinstance(v, Generated)), None)
    r = next((v for v in inputs if isinstance(v, Ranking)), None)
    shown = g.clips if g is not None else top_clips(r)
    named = []
    for m in re.finditer(r"\[clip (\d+)\]", g.text if g else ""):
        n = int(m.group(1))
        if n in shown and n not in named:
            named.append(n)
    chosen, source = (named, "script") if named else (shown, "ranking")
    path = ctx.assemble_fn([ctx.clips[i] for i in chosen], ctx.out, ctx.request) if ctx.assemble_fn else None
    return Assembled(str(path) if path else None, chosen, source)


FUNCTIONS = {"encode": encode, "caption": caption, "embed": embed, "rank": rank, "generate": generate,
             "assemble": assemble}


# ---- prompts
def top_clips(r: Ranking | None) -> list[int]:
    """The clip ids of the first query's top-k candidates."""
    if r is None or not r.ranked:
        return []
    ids = r.candidates.clips or list(range(len(r.candidates.items)))
    return [ids[i] for i, _ in r.ranked[0][: r.top_k]]


def lm_prompt(inputs, args, n_clips: int) -> tuple[str, list[int]]:
    """An instruction, the request's text, the context clips' texts (the top-k of a ranking among
    the inputs, else every clip), earlier generated texts, and the answer's label."""
    ranking = next((v for v in inputs if isinstance(v, Ranking)), None)
    clip_texts = [v for v in inputs if isinstance(v, Texts) and v.clips is not None]
    own = [v for v in inputs if isinstance(v, Texts) and v.clips is None]
    generated = [v for v in inputs if isinstance(v, Generated)]
    shown = top_clips(ranking) if ranking is not None else (list(range(n_clips)) if clip_texts else [])
    lines = [str(args.get("instruction", "Answer the request using the clips' descriptions."))]
    for t in own:
        lines.append(f"{args.get('prompt_label', 'Request:')} {' '.join(t.items)}")
    if shown and clip_texts:
        by_clip = dict(zip(clip_texts[0].clips, clip_texts[0].items))
        lines.append("Clips:")
        lines += [f"[clip {i}] {by_clip.get(i, '')}" for i in shown]
    lines += [g.text for g in generated]
    lines.append(str(args.get("answer", "Answer:")))
    return "\n".join(lines), shown
