"""The task actions: what each `run` step of a plan does with real data.

- `decode:i`   clip i's frames decoded from its video (video.decode_clip), ahead of the encoder.
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

Requests: a workload's requests run one after another on the same clips; when the first step of
request k arrives, the results of request k-1 are kept (`results()["requests"]`) and the
per-request data (captions, embeddings, script) start afresh with request k's prompt or queries.
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
                 assemble_fn=None, request_texts=None, frames: int = 6, frame_size: int = 224):
        self.task, self.clips, self.queries, self.prompt, self.top_k = task, clips, list(queries), prompt, top_k
        self.assemble_fn = assemble_fn   # assemble_fn(clips, request) -> output path
        self.request_texts = request_texts   # request k -> its prompt (or query list); None: one request
        self.frames, self.frame_size = frames, frame_size
        self.request = 0
        self.done_requests: list[dict] = []
        self.lock = threading.Lock()
        self._fresh()

    def _fresh(self) -> None:
        """The per-request data, empty."""
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

    def _next_request(self, r: int) -> None:
        self.done_requests.append(self.results(with_requests=False))
        self.request = r
        self._fresh()
        text = self.request_texts(r)
        if self.task == "retrieval":
            self.queries = list(text)
        else:
            self.prompt = text

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
        if step.request != self.request:
            with self.lock:
                if step.request != self.request:
                    self._next_request(step.request)
        if step.op == "decode":
            from .video import decode_clip
            frames = decode_clip(self.clips[step.clip], self.frames, self.frame_size)
            with self.lock:
                self.clips[step.clip].frames = frames
        elif step.op == "encode":
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
        elif step.op == "embed" and step.id.rsplit("/", 1)[-1] == "index":
            self.caption_emb = module.embed([self.captions[i] for i in range(len(self.clips))])
        elif step.op == "embed":
            self.text_emb = module.embed(self.texts())
        elif step.op == "rank":
            self.rank()
        elif step.op == "generate":
            name = step.id.rsplit("/", 1)[-1]
            self.generated = module.generate(self.lm_prompt(name), tokens=a.get("tokens", 64))
            if name == "script":
                self.choose()
        elif step.op == "assemble":
            if not self.chosen:
                self.choose()
            self.output = (self.assemble_fn([self.clips[i] for i in self.chosen], self.request)
                           if self.assemble_fn else None)
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

    def results(self, with_requests: bool = True) -> dict:
        """This request's results; with several requests, `requests` lists each one's (the last
        one's also at the top level)."""
        out: dict = {"task": self.task, "request": self.request,
                     "clips": [self.clip_record(i) for i in range(len(self.clips))]}
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
        if with_requests and self.done_requests:
            out["requests"] = [*self.done_requests, {k: v for k, v in out.items() if k != "clips"}]
        return out
