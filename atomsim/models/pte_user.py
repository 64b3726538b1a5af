"""An ExecuTorch program of one's own as a pipeline module (`{pte: export/vision.pte, kind: ...}`),
run through the same path as the zoo's programs (executorch_backend: XNNPACK's process-wide
thread pool set per op, the weight cache shared by the methods).

The manifest (`<program>.json` beside it, or the module's `manifest:`) says what the program
takes, in the shape `atomsim models export` writes for the zoo's programs:

    {"kind": "vision-encoder",
     "inputs": [{"name": "frames", "dtype": "float32", "shape": [6, 3, 224, 224]}]}
    {"kind": "text-encoder", "tokenizer": "tokenizer/",          (a tokenizer directory, relative)
     "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [5, 64]},
                {"name": "attention_mask", "dtype": "int64", "shape": [5, 64]}]}

- vision-encoder `encode(frames)`: the clip's frames (CLIP-normalized, [F, 3, S, S]) must have the
  program's shape (set the scenario's frames_per_clip and frame_size to it); output 0, flattened.
- text-encoder `embed(texts)`: tokenized here, padded or truncated to the program's length, in
  batches of its rows (a short last batch padded by repeating its last text); output 0 (one row a
  text, pooled by the program), L2-normalized here.
A program is not quantized by atomsim: it is its own backend, `pte` (profile key `<name>/pte`).
"""
from __future__ import annotations

import contextlib
import gc
import json
from pathlib import Path

from ..errors import ConfigError, ModelStoreError
from ..procfs import malloc_trim

KINDS = ("vision-encoder", "text-encoder")
QUANT = "pte"


def read_manifest(program, kind: str, manifest) -> dict:
    """The program's manifest (its path: schema.pipeline `manifest_path`), checked against its kind;
    ConfigError naming the file and field."""
    p = Path(manifest)
    try:
        m = json.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: the manifest of program {program}: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"{p}: not a manifest (JSON): {e}") from None
    want = {"vision-encoder": ["frames"], "text-encoder": ["input_ids", "attention_mask"]}[kind]
    names = [i.get("name") for i in m.get("inputs", []) if isinstance(i, dict)]
    if m.get("kind") not in (None, kind):
        raise ConfigError(f"{p}: field 'kind': the program is a {m['kind']}, the pipeline says {kind}")
    if names != want or any(not isinstance(i.get("shape"), list) for i in m["inputs"]):
        raise ConfigError(f"{p}: field 'inputs': a {kind} program takes {', '.join(want)} with static shapes, "
                          f"the manifest lists {names}")
    if kind == "text-encoder" and not m.get("tokenizer"):
        raise ConfigError(f"{p}: field 'tokenizer': a text-encoder program needs its tokenizer directory")
    return m


class UserProgram:
    """A loaded program of one's own: encode or embed, run by ExecuTorch (no torch module)."""

    def __init__(self, path: Path, kind: str, manifest: dict, tokenizer=None):
        from .executorch_backend import load_program
        from .executorch_module import _Pool
        self.path, self.kind, self.manifest, self.tokenizer = Path(path), kind, manifest, tokenizer
        self.model, self.quant, self.net = self.path.stem, QUANT, None
        self.name = f"{self.path.stem}/{QUANT}"
        self.params = int(manifest.get("params") or 0)
        with _Pool.lock:
            self.epoch = _Pool.epoch
        self.method = load_program(self.path)

    def __repr__(self):
        return f"<atomsim UserProgram {self.name}{' (freed)' if self.method is None else ''}>"

    @contextlib.contextmanager
    def _session(self, op: str):
        """As the zoo's programs: the pool at this thread's torch thread count when no other op runs;
        the method loaded again when the pool changed since (executorch_module._Pool)."""
        import torch

        from .executorch_backend import load_program
        from .executorch_module import _Pool
        if self.method is None:
            raise RuntimeError(f"{self.name} was freed")
        if op != {"vision-encoder": "encode", "text-encoder": "embed"}[self.kind]:
            raise AttributeError(f"a {self.kind} program has no op {op!r}")
        epoch = _Pool.enter(torch.get_num_threads())
        try:
            if epoch != self.epoch:
                self.method, self.epoch = load_program(self.path), epoch
            yield
        finally:
            _Pool.leave()

    def _shape(self, name: str) -> list:
        return next(i["shape"] for i in self.manifest["inputs"] if i["name"] == name)

    def encode(self, frames):
        from .executorch_backend import run
        with self._session("encode"):
            want = self._shape("frames")
            if list(frames.shape) != want:
                raise ModelStoreError(f"{self.path}: the program takes frames of shape {want}, got "
                                      f"{list(frames.shape)} (set the scenario's frames_per_clip and frame_size to it)")
            return run(self.method, frames.float().contiguous())[0].reshape(-1)

    def embed(self, texts):
        import torch

        from .executorch_backend import embed_batches
        with self._session("embed"):
            texts = list(texts)
            out = embed_batches(self.method, self.tokenizer, texts, *self._shape("input_ids"))
            vecs = torch.cat(out) if out else torch.zeros(0, 1)
            return torch.nn.functional.normalize(vecs.float().reshape(len(texts), -1), dim=-1)

    def example_inputs(self, op, items=5, tokens=23, **_ignored) -> tuple:
        """Real-shaped inputs: the program's frames, or `items` texts of `tokens` words."""
        import torch
        if op == "encode":
            return (torch.randn(*self._shape("frames"), generator=torch.Generator().manual_seed(0)),)
        return ([" ".join(f"w{(i * 7 + j) % 50}" for j in range(tokens)) for i in range(items)],)

    def planned_activation_bytes(self) -> int:
        from .executorch_backend import planned_bytes
        return planned_bytes(self.path)

    def weight_bytes(self) -> int:
        return self.path.stat().st_size

    def free(self) -> None:
        self.method = None
        self.tokenizer = None
        gc.collect()
        malloc_trim()


def load(program, kind: str, manifest) -> UserProgram:
    """Load a program of one's own (its manifest read and checked first)."""
    import os
    m = read_manifest(program, kind, manifest)
    tok = None
    if kind == "text-encoder":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoTokenizer
        tok_dir = Path(manifest).parent / m["tokenizer"]
        tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    mod = UserProgram(Path(program), kind, m, tok)
    gc.collect()
    malloc_trim()
    return mod
