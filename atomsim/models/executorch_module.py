"""The ExecuTorch backends in the model store and the runner: `models.load(preset, model, quant)`
of an `executorch-xnnpack[-int8]` backend returns a `ProgramModule`, with the same ops as the
torch modules (encode, caption, generate, embed, example_inputs, free), each a call of the
module's `.pte` program (executorch_backend.py says what each program computes).

Store layout (`<store>/<preset>/<model>/<quant>/`): `model.pte` (exported from the store's fp32
weights at build time), `atomsim.json` (bytes and sha256 of every file, the program's manifest
entry, versions), `config.json`; the sentence encoder's tokenizer files; the decoder's
`embeddings.safetensors` (its `embed_tokens` table, fp32: the program takes embeddings, so the
host turns token ids into them, and a caption's prefix is the clip's feature vector).

What the host code does around the programs:
- video encoder: one call per clip; the frames must have the program's shape (the manifest's).
- sentence encoder: texts tokenized here, padded or truncated to the program's `SENTENCE_TOKENS`
  tokens, in batches of the program's `items` rows (a last short batch padded by repeating its
  last text; the padding rows are dropped).
- bert-decoder: the beam search in Python, as zoo.bert_caption, each step one call of the
  program on every beam's prefix (no cache: the prefix runs again); the program's batch is the beam.
- decoder: the token loop in Python: prefill, then one call per token. `generate` and a beam-1
  caption run the program's batch-1 `forward` greedily (`executorch_backend.greedy`); a caption
  of the program's beam width runs its `beam` method, the beam search on the host
  (`executorch_backend.beam_search`: the same search as transformers' on the torch module), any
  other width is refused. A prompt longer than the cache leaves room for (`MAX_CACHE - tokens`)
  keeps its last tokens.
- threads: XNNPACK's thread pool is one per process. Each op sets it to torch's thread count of
  the calling thread (what the runner's lanes and the profiler set) when no other op is running,
  otherwise it runs with the pool as it is. A loaded program keeps the pool it was loaded with,
  so after a resize each program loads its method again before its next op (`_Pool`): that op's
  time includes the reload, and `reloads` counts them.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from ..errors import ModelStoreError
from . import Module, executorch_backend as eb, specs
from .specs import OPS

PROGRAM = "model.pte"
EMBEDDINGS = "embeddings.safetensors"


class _Pool:
    """XNNPACK's process-wide thread pool. A loaded program's XNNPACK runtime keeps the pool it was
    loaded with, so a resize (`_unsafe_reset_threadpool`) leaves every loaded program pointing at
    a freed pool (measured: SIGSEGV in pthreadpool_parallelize_2d_tile_2d_dynamic, at a later
    call, when a program loaded under the default 2-thread pool ran after a resize to 1). So: a
    resize happens only while no op runs, and bumps `epoch`; a program loaded in an older epoch
    loads its method again (the program file, load_method) before its next op."""
    lock = threading.Lock()
    threads: int | None = None
    busy = 0
    epoch = 0

    @classmethod
    def enter(cls, want: int) -> int:
        with cls.lock:
            if cls.threads is None:
                cls.threads = eb.pool_threads()
            if cls.busy == 0 and cls.threads != want:
                eb.set_threads(want)
                cls.threads, cls.epoch = want, cls.epoch + 1
            cls.busy += 1
            return cls.epoch

    @classmethod
    def leave(cls) -> None:
        with cls.lock:
            cls.busy -= 1


class ProgramModule(Module):
    """A loaded program: the ops of the torch Module, run by ExecuTorch (no torch module: `net` is None)."""

    def __init__(self, method, preset, model, quant, meta, path, embeddings=None, tokenizer=None, epoch=0):
        self.net, self.method, self.embeddings = None, method, embeddings
        self.preset, self.model, self.quant = preset, model, quant
        self.name = f"{model}/{quant}"
        self.meta, self.path = meta or {}, Path(path)
        self.entry = self.meta.get("program", {})
        self.tokenizer = tokenizer
        self.epoch, self.reloads = epoch, 0   # the pool's epoch at load; method loads since (_Pool)

    def __repr__(self):
        return f"<atomsim ProgramModule {self.preset}:{self.name}{' (freed)' if self.method is None else ''}>"

    @contextlib.contextmanager
    def _session(self, op):
        """An op: XNNPACK's pool set to torch's thread count of this thread if no other op runs,
        the method loaded again if the pool changed since it was loaded (`_Pool`)."""
        import torch
        self._need(op)
        epoch = _Pool.enter(torch.get_num_threads())
        try:
            if epoch != self.epoch:
                self.method, self.epoch = eb.load_program(self.path / PROGRAM, list(self.entry.get("methods", {}))), epoch
                self.reloads += 1
            yield
        finally:
            _Pool.leave()

    def _need(self, op):
        if self.method is None:
            raise RuntimeError(f"{self.name} was freed")
        if op not in OPS[self.model]:
            raise AttributeError(f"{self.model} has no op {op!r}; ops: {', '.join(OPS[self.model])}")

    def _input_shape(self, name) -> list:
        return next(i["shape"] for i in self.entry["inputs"] if i["name"] == name)

    def encode(self, frames):
        with self._session("encode"):
            return self._encode(frames)

    def _encode(self, frames):
        want = self._input_shape("frames")
        if list(frames.shape) != want:
            raise ModelStoreError(f"{self.name}: the program takes frames of shape {want}, got {list(frames.shape)} "
                                  f"(set the scenario's frames_per_clip and frame_size to the program's)")
        return eb.run(self.method, frames.float().contiguous())[0]

    def embed(self, texts):
        with self._session("embed"):
            return self._embed(texts)

    def _embed(self, texts):
        import torch
        items, length = self._input_shape("input_ids")
        out = eb.embed_batches(self.method, self.tokenizer, list(texts), items, length)
        return torch.cat(out) if out else torch.zeros(0, 384)

    def caption(self, features, beam=4, tokens=23) -> list[int]:
        with self._session("caption"):
            if self.model == "bert-decoder":
                return self._bert_caption(features, beam, tokens)
            return self._llama_caption(features, beam, tokens)

    def _llama_caption(self, features, beam, tokens) -> list[int]:
        import torch
        emb = self.embeddings
        prefix = torch.cat([features.reshape(1, 1, -1).float(), emb[self.tokenizer.bos_id].reshape(1, 1, -1)], dim=1)
        if beam == 1:
            return eb.greedy(self.method, emb, prefix, tokens)
        width = self.entry.get("methods", {}).get("beam", {}).get("batch")
        if width is None:
            from .store import rebuild_cmd
            raise ModelStoreError(f"{self.name}: the program has no beam method (exported before the beam search): "
                                  f"run `{rebuild_cmd(self.preset, self.model, self.quant, self.path.parents[2])} --force`")
        if beam != width:
            raise ModelStoreError(f"{self.name}: the program runs beam {width} (or 1); asked beam {beam}")
        return eb.beam_search(self.method, emb, prefix, beam, tokens)

    def _bert_caption(self, features, beam, tokens) -> list[int]:
        """zoo.bert_caption's beam search, each step one program call on every beam's whole prefix."""
        import torch
        from .zoo import beam_step
        rows = self._input_shape("input_ids")[0]
        if beam != rows or tokens + 1 > self.entry["max_tokens"]:
            raise ModelStoreError(f"{self.name}: the program runs beam {rows} over at most {self.entry['max_tokens'] - 1} "
                                  f"tokens; asked beam {beam}, {tokens} tokens")
        vocab = int(json.loads((self.path / "config.json").read_text())["bert"]["vocab_size"])
        seqs = torch.full((1, 1), 101 if vocab > 101 else 1, dtype=torch.long)
        scores, feats = torch.zeros(1), features.reshape(-1).float()
        for _ in range(tokens):
            n = seqs.shape[0]
            logp = eb.run(self.method, seqs[torch.arange(rows) % n], feats)[0][:n]   # rows beyond n: padding
            seqs, scores, _ = beam_step(seqs, scores, logp, beam, vocab)
        return [int(t) for t in seqs[int(torch.argmax(scores)), 1:]]

    def generate(self, prompt: str, tokens=64) -> str:
        with self._session("generate"):
            return self._generate(prompt, tokens)

    def _generate(self, prompt: str, tokens) -> str:
        ids = self.tokenizer.encode(prompt)[-max(1, eb.MAX_CACHE - 1 - tokens):]
        ids_out = eb.greedy(self.method, self.embeddings, self.embeddings[ids].unsqueeze(0), tokens)
        return self.tokenizer.decode(ids_out)

    def feature_dim(self) -> int:
        if self.model == "decoder":
            return int(self.embeddings.shape[1])
        return super().feature_dim()

    def weight_bytes(self) -> int:
        """What the runner counts as this module's weights when its load overlapped another (it
        cannot tell their RSS growths apart): the program file's bytes (its constants) plus the
        host-side embeddings table. Not what the load keeps resident: XNNPACK packs the delegated
        weights into buffers of its own at load_method (one copy for all methods: executorch_weights),
        and mapped constants are read only when an op touches them. Small preset, resident after
        load and one call of each op over these bytes: see profiles/host-small-executorch.json."""
        if self.method is None:
            return 0
        emb = 0 if self.embeddings is None else self.embeddings.numel() * self.embeddings.element_size()
        return int(self.entry.get("bytes") or (self.path / PROGRAM).stat().st_size) + emb

    def planned_activation_bytes(self) -> int:
        """The activation memory the program plans ahead of time (`executorch_backend.planned_bytes`;
        the profiler records it beside the measured RSS figures)."""
        return eb.planned_bytes(self.path / PROGRAM)

    def free(self) -> None:
        from ..procfs import malloc_trim
        self.method = self.embeddings = self.tokenizer = None
        gc.collect()
        malloc_trim()


# ------------------------------------------------------------------ store

def files(preset, model, quant, store=None) -> list[Path]:
    from .store import model_dir
    d = model_dir(preset, model, quant, store)
    return [d / PROGRAM] + ([d / EMBEDDINGS] if model == "decoder" else [])


def load(preset, model, quant, store=None, path=None, verify=False) -> ProgramModule:
    """Read the program (the runtime: file read and load_method) and the host-side parts."""
    from .store import model_dir, read_meta, rebuild_cmd, sha256
    d = Path(path) if path is not None else model_dir(preset, model, quant, store)
    meta = read_meta(d, preset, model, quant, store)
    fix = f"run `{rebuild_cmd(preset, model, quant, store)} --force`"
    for name, info in meta["files"].items():
        f = d / name
        if not f.exists() or f.stat().st_size != info["bytes"] or (verify and sha256(f) != info["sha256"]):
            raise ModelStoreError(f"program file {f} is missing or corrupt; {fix}")
    embeddings = tokenizer = None
    if model == "decoder":
        from safetensors.torch import load_file
        from .zoo import HashTokenizer
        embeddings = load_file(str(d / EMBEDDINGS), backend="pread")["embed_tokens"]
        tokenizer = HashTokenizer(embeddings.shape[0])
    elif model == "sentence-encoder":
        from transformers import AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained(str(d))
    import torch
    epoch = _Pool.enter(torch.get_num_threads())   # loaded with the pool its first ops will likely use
    try:
        method = eb.load_program(d / PROGRAM, list(meta.get("program", {}).get("methods", {})))
    except Exception as e:   # noqa: BLE001 - the runtime's own errors (RuntimeError, ValueError)
        raise ModelStoreError(f"program {d / PROGRAM} cannot be loaded ({type(e).__name__}: {str(e)[:200]}); {fix}") from e
    finally:
        _Pool.leave()
    return ProgramModule(method, preset, model, quant, meta, d, embeddings=embeddings, tokenizer=tokenizer, epoch=epoch)


def build(preset, model, quant, store=None, progress=None, force=False) -> Path:
    """Export (preset, model) from the store's fp32 weights into the store as `quant`; idempotent; atomic."""
    from . import store as st
    eb.check_backend(quant)
    store = st.check_writable(Path(store or specs.default_store()))
    final = st.model_dir(preset, model, quant, store)
    if not force and st.is_complete(final):
        return final
    try:
        import executorch  # noqa: F401
    except ImportError:
        raise ModelStoreError(f"{model}/{quant} needs ExecuTorch: pip install -e '.[executorch]'") from None
    say = progress or (lambda msg: None)
    fp32 = st.build(preset, model, "fp32", store=store, progress=progress)
    say(f"{preset}/{model}/{quant}: export")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{quant}.tmp-"))
    try:
        entry = eb.export_module(preset, model, quant, tmp, store=store)
        os.rename(tmp / entry["program"], tmp / PROGRAM)
        entry["program"] = PROGRAM
        _host_parts(model, fp32, tmp)
        fmeta = json.loads((fp32 / "atomsim.json").read_text())
        from importlib.metadata import version
        meta = {"format": st.FORMAT, "preset": preset, "model": model, "quant": quant, "seed": fmeta.get("seed"),
                "real_weights": fmeta.get("real_weights"), "params": fmeta.get("params"), "program": entry,
                "exported_from": f"{preset}/{model}/fp32 (sha256 {fmeta['files'][st.weight_name('fp32')]['sha256']})",
                "versions": dict(fmeta.get("versions") or {}, executorch=version("executorch")),
                "files": {p.name: {"bytes": p.stat().st_size, "sha256": st.sha256(p)}
                          for p in sorted(tmp.iterdir()) if p.name in (PROGRAM, EMBEDDINGS)}}
        from ..io import atomic_write_json
        atomic_write_json(tmp / "atomsim.json", meta)
        st.install(tmp, final, quant)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"{preset}/{model}/{quant}: done")
    return final


def _host_parts(model, fp32: Path, out: Path) -> None:
    """What the host code needs beside the program: config, tokenizer files, the decoder's embeddings."""
    from .store import TOKENIZER_FILES
    shutil.copy2(fp32 / "config.json", out / "config.json")
    if model == "sentence-encoder":
        for n in TOKENIZER_FILES:
            if (fp32 / n).exists():
                shutil.copy2(fp32 / n, out / n)
    if model == "decoder":
        from safetensors import safe_open
        from safetensors.torch import save_file
        with safe_open(str(fp32 / "model.safetensors"), framework="pt") as f:
            emb = f.get_tensor("lm.model.embed_tokens.weight")
        save_file({"embed_tokens": emb.contiguous()}, str(out / EMBEDDINGS))
