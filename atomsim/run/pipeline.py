"""The runner's data flow: what each `run` step of a plan reads and writes, by the names its
pipeline stage wires (`in`, `out`), through the op registry's functions (ops.py). No task is
named here and no step id is read: a step's stage is `step.node`, its clip `step.clip`.

- `decode` (implicit): clip i's frames, decoded from its video ahead of the stages that read them,
  by the run's decoder process (decoder.py; the lane's thread waits for the uint8 frames, GIL
  released, and normalizes them), or in the lane's thread without one (`decoder=None`, as under
  ATOMSIM_DECODE_IN_THREAD=1).
- a per-clip stage reads per-clip values of its clip; its output is kept per clip. A per-clip
  value is released when the last per-clip stage that reads it has run on that clip, unless a
  per-request stage reads it (then it is kept for the request: captions, say).
- a per-request stage reads per-clip values as all clips' (texts gathered in clip order), the
  request's `prompt` and `queries`, and earlier per-request outputs.

Requests: a workload's requests run one after another on the same clips; when the first step of
request k arrives, request k-1's outputs are kept (`results()["requests"]`) and the per-request
values start afresh.
"""
from __future__ import annotations

import threading
from collections import Counter

from ..errors import AtomsimError, StageError
from . import ops
from .video import Clip


class Dataflow:
    """Holds the run's values (clips, per-clip and per-request outputs) and calls the ops."""

    def __init__(self, pipeline, clips: list[Clip], workload, assemble_fn=None, decoder=None):
        self.pipe, self.clips, self.w = pipeline, clips, workload
        self.decoder = decoder   # decoder.DecoderProcess, or None: decode in the lane's thread
        self.assemble_fn = assemble_fn   # assemble_fn(clips, out_name, request) -> output path
        # per-clip stages reading each value (released after the last), and what requests keep
        self.readers = Counter(v for s in pipeline.stages if s.per_clip for v in s.inputs)
        self.kept = {v for s in pipeline.stages if not s.per_clip for v in s.inputs}
        self.request = 0
        self.done_requests: list[dict] = []
        self.lock = threading.Lock()
        self._fresh()

    def _fresh(self) -> None:
        self.per_clip: dict[str, dict[int, object]] = {}
        self.values: dict[str, object] = {}
        self.consumed: dict[tuple[str, int], int] = {}

    # ---- memory accounting: bytes of clip inputs alive (frames and per-clip tensors)
    def inputs_bytes(self) -> int:
        total = sum(c.frames.numel() * c.frames.element_size() for c in self.clips if c.frames is not None)
        for by_clip in list(self.per_clip.values()):
            for v in list(by_clip.values()):
                if hasattr(v, "numel"):
                    total += v.numel() * v.element_size()
        return total

    # ---- dispatch
    def __call__(self, step, modules) -> None:
        if step.request != self.request:
            with self.lock:
                if step.request != self.request:
                    self._next_request(step.request)
        if step.op == "decode":
            from .decoder import decode
            frames = decode(self.clips[step.clip], int(step.args.get("frames", 6)),
                            int(step.args.get("frame_size", 224)), self.decoder)
            with self.lock:
                self.clips[step.clip].frames = frames
            return
        stage = self.pipe.stage(step.node)
        module = modules.get(step.instance) if step.instance else None
        args = {**stage.args, **step.args}
        ctx = ops.Context(self.clips, self.w.top_k, self.request, self.assemble_fn, stage.out)
        try:
            out = ops.FUNCTIONS[stage.op](module, self._inputs(stage, step.clip), args, ctx)
        except AtomsimError:
            raise
        except Exception as e:   # a user's module on real data: one line naming the stage, not a traceback
            where = f"clip {step.clip}" if stage.per_clip else f"request {self.request}"
            raise StageError(f"{self.pipe.file or self.pipe.name}: stage {stage.name!r} (op {stage.op}) failed on "
                             f"{where}: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
        with self.lock:
            if stage.per_clip:
                self.per_clip.setdefault(stage.out, {})[step.clip] = out
                self._release(stage, step.clip)
            else:
                self.values[stage.out] = out

    def _inputs(self, stage, clip) -> list:
        out = []
        for v in stage.inputs:
            if v == "frames":
                out.append(self.clips[clip].frames)
            elif v == "prompt":
                out.append(ops.Texts([self.w.request_prompt(self.request)]))
            elif v == "queries":
                out.append(ops.Texts(self.w.request_queries(self.request)))
            elif stage.per_clip:
                out.append(self.per_clip[v][clip])
            elif self.pipe.per_clip_value(v):
                out.append(self._gathered(v))
            else:
                out.append(self.values[v])
        return out

    def _gathered(self, v: str):
        """A per-clip value as a per-request stage reads it: every clip's, in clip order (texts,
        or vectors stacked)."""
        by_clip = self.per_clip.get(v, {})
        ids = list(range(len(self.clips)))
        if by_clip and all(isinstance(x, ops.Vectors) for x in by_clip.values()):
            import torch
            texts = [t for i in ids for t in by_clip[i].texts.items]
            return ops.Vectors(torch.cat([by_clip[i].tensor for i in ids]), ops.Texts(texts, ids))
        return ops.Texts([by_clip.get(i, "") for i in ids], ids)

    def _release(self, stage, clip) -> None:
        """Drop a clip's per-clip inputs that no later stage reads (frames after their last reader)."""
        for v in stage.inputs:
            n = self.consumed[(v, clip)] = self.consumed.get((v, clip), 0) + 1
            if n < self.readers[v] or v in self.kept:
                continue
            if v == "frames":
                self.clips[clip].frames = None
            else:
                self.per_clip.get(v, {}).pop(clip, None)

    def _next_request(self, r: int) -> None:
        self.done_requests.append(self.results(with_requests=False))
        self.request = r
        self._fresh()

    # ---- results
    def clip_record(self, i: int) -> dict:
        c = self.clips[i]
        return {"clip": i, "video": c.video, "start": round(c.start_s, 6), "end": round(c.end_s, 6)}

    def results(self, with_requests: bool = True) -> dict:
        """This request's named outputs; with several requests, `requests` lists each one's (the
        last one's also at the top level)."""
        outputs = {name: self._json(v) for name, v in self.values.items()}
        for name, by_clip in self.per_clip.items():
            if all(isinstance(t, str) for t in by_clip.values()):
                outputs[name] = [{**self.clip_record(i), "text": t} for i, t in sorted(by_clip.items())]
        out: dict = {"pipeline": self.pipe.name, "request": self.request,
                     "prompt": self.w.request_prompt(self.request), "queries": self.w.request_queries(self.request),
                     "clips": [self.clip_record(i) for i in range(len(self.clips))], "outputs": outputs}
        if with_requests and self.done_requests:
            out["requests"] = [*self.done_requests, {k: v for k, v in out.items() if k != "clips"}]
        return out

    def _json(self, v):
        if isinstance(v, ops.Vectors):
            return {"vectors": list(v.tensor.shape), "texts": len(v.texts.items)}
        if isinstance(v, ops.Ranking):
            ids = v.candidates.clips
            return [{"query": q, "ranked": [{**(self.clip_record(ids[i]) if ids else {"item": i}),
                                              "text": v.candidates.items[i], "score": round(s, 6)} for i, s in row]}
                    for q, row in zip(v.queries, v.ranked)]
        if isinstance(v, ops.Generated):
            return {"text": v.text, "clips": v.clips}
        if isinstance(v, ops.Assembled):
            return {"path": v.path, "order_source": v.order_source, "chosen": [self.clip_record(i) for i in v.chosen]}
        return v if isinstance(v, (str, int, float, list, dict)) or v is None else repr(v)
