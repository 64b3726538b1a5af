"""The task actions: what each `run` step of a plan does with real data.

- `encode:i`   video encoder on clip i's frames -> features; clip i's frames are released.
- `caption:i`  decoder (or BERT caption decoder) on the features, beam search -> token ids ->
               text (the module's tokenizer; the synthetic decoders' HashTokenizer decodes id i
               as the word "w<i>"); the features are released.
- `index`      MiniLM embeds every caption.
- `embed-queries` / `embed-prompt` / `embed-question`  MiniLM embeds the query texts.
- `rank`       cosine similarity (embeddings are L2-normalized) -> clips ranked per query.
- `script` / `summary` / `answer`  the decoder generates `tokens` tokens from a prompt made of an
               instruction, the user's text and the captions (top-k by rank for script and answer,
               all clips for summary). With synthetic weights the text is noise, so the clips of
               an assembly follow the ranking; the step still runs at its full real cost.
- `assemble`   stitches the chosen clips (assemble.py).
"""
from __future__ import annotations

import re
import threading

from .video import Clip

SCRIPT_TEMPLATE = ("You are a video editor. Write a script for a short video that answers the request, "
                   "naming the clips to use in order as [clip N].\nRequest: {prompt}\nClips:\n{captions}\nScript:")
SUMMARY_TEMPLATE = "Summarize the video described by these clip captions.\nClips:\n{captions}\nSummary:"
ANSWER_TEMPLATE = ("Answer the question about the video using the clip captions.\nQuestion: {prompt}\n"
                   "Clips:\n{captions}\nAnswer:")


def decode_tokens(module, ids) -> str:
    tok = getattr(module, "tokenizer", None)
    if tok is not None and hasattr(tok, "decode") and getattr(module, "model", "") != "sentence-encoder":
        try:
            return tok.decode(ids)
        except Exception:  # noqa: BLE001 - a tokenizer of another vocabulary; fall back
            pass
    return " ".join(f"w{int(i)}" for i in ids if int(i) > 2)


class Pipeline:
    """Holds the run's data (clips, features, captions, embeddings, results) and the actions."""

    def __init__(self, task: str, clips: list[Clip], queries: list[str], prompt: str, top_k: int,
                 assemble_fn=None):
        self.task, self.clips, self.queries, self.prompt, self.top_k = task, clips, list(queries), prompt, top_k
        self.assemble_fn = assemble_fn
        self.features: dict[int, object] = {}
        self.captions: dict[int, str] = {}
        self.caption_ids: dict[int, list[int]] = {}
        self.caption_emb = None
        self.text_emb = None
        self.rankings: list[list[tuple[int, float]]] = []
        self.generated: str | None = None
        self.chosen: list[int] = []
        self.order_source = None
        self.output = None
        self.lock = threading.Lock()

    # ---- memory accounting: bytes of clip inputs alive (frames + features)
    def inputs_bytes(self) -> int:
        total = 0
        for c in self.clips:
            f = c.frames
            if f is not None:
                total += f.numel() * f.element_size()
        for f in list(self.features.values()):
            total += f.numel() * f.element_size()
        return total

    def texts(self) -> list[str]:
        return self.queries if self.task == "retrieval" else [self.prompt]

    # ---- dispatch
    def __call__(self, step, modules) -> None:
        module = modules.get(step.instance) if step.instance else None
        a = step.args
        if step.op == "encode":
            clip = self.clips[step.clip]
            feats = module.encode(clip.frames)
            with self.lock:
                self.features[step.clip] = feats
                clip.frames = None
        elif step.op == "caption":
            feats = self.features[step.clip]
            ids = module.caption(feats, beam=a.get("beam", 4), tokens=a.get("tokens", 23))
            with self.lock:
                self.caption_ids[step.clip] = list(ids)
                self.captions[step.clip] = decode_tokens(module, ids)
                self.features.pop(step.clip, None)
        elif step.op == "embed" and step.id == "index":
            self.caption_emb = module.embed([self.captions[i] for i in range(len(self.clips))])
        elif step.op == "embed":
            self.text_emb = module.embed(self.texts())
        elif step.op == "rank":
            self.rank()
        elif step.op == "generate":
            self.generated = module.generate(self.lm_prompt(step.id), tokens=a.get("tokens", 64))
            if step.id == "script":
                self.choose()
        elif step.op == "assemble":
            if not self.chosen:
                self.choose()
            self.output = self.assemble_fn([self.clips[i] for i in self.chosen]) if self.assemble_fn else None
        else:
            raise ValueError(f"step {step.id!r}: unknown op {step.op!r}")

    def rank(self) -> None:
        sims = self.text_emb.float() @ self.caption_emb.float().T    # [Q, N] cosine (both L2-normalized)
        self.rankings = []
        for row in sims:
            order = sorted(range(row.shape[0]), key=lambda i: (-float(row[i]), i))
            self.rankings.append([(i, float(row[i])) for i in order])

    def top(self) -> list[int]:
        if self.rankings:
            return [i for i, _ in self.rankings[0][: self.top_k]]
        return list(range(min(self.top_k, len(self.clips))))

    def lm_prompt(self, name: str) -> str:
        ids = list(range(len(self.clips))) if name == "summary" else self.top()
        captions = "\n".join(f"[clip {i}] {self.captions.get(i, '')}" for i in ids)
        template = {"script": SCRIPT_TEMPLATE, "summary": SUMMARY_TEMPLATE, "answer": ANSWER_TEMPLATE}[name]
        return template.format(prompt=self.prompt, captions=captions)

    def choose(self) -> None:
        """Clips named by the script ([clip N], N among the top-k), else the top-k in ranking order."""
        top = self.top()
        named = []
        for m in re.finditer(r"\[clip (\d+)\]", self.generated or ""):
            n = int(m.group(1))
            if n in top and n not in named:
                named.append(n)
        if named:
            self.chosen, self.order_source = named, "script"
        else:
            self.chosen, self.order_source = top, "ranking"

    # ---- results
    def clip_record(self, i: int, score: float | None = None) -> dict:
        c = self.clips[i]
        rec = {"clip": i, "video": c.video, "start": round(c.start_s, 6), "end": round(c.end_s, 6),
               "caption": self.captions.get(i)}
        if score is not None:
            rec["score"] = round(score, 6)
        return rec

    def results(self) -> dict:
        out: dict = {"task": self.task, "clips": [self.clip_record(i) for i in range(len(self.clips))]}
        if self.task == "retrieval":
            out["queries"] = [{"query": q, "ranked": [self.clip_record(i, s) for i, s in r]}
                              for q, r in zip(self.queries, self.rankings)]
        elif self.task == "assembly":
            out.update({"prompt": self.prompt,
                        "ranking": [self.clip_record(i, s) for i, s in (self.rankings[0] if self.rankings else [])],
                        "script": self.generated, "order_source": self.order_source,
                        "chosen": [self.clip_record(i) for i in self.chosen],
                        "output": str(self.output) if self.output else None})
        elif self.task == "summarization":
            out["summary"] = self.generated
        elif self.task == "qa":
            out.update({"question": self.prompt, "answer": self.generated,
                        "context": [self.clip_record(i, s) for i, s in (self.rankings[0][: self.top_k] if self.rankings else [])]})
        return out
