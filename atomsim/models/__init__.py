"""atomsim.models: the paper's modules (real architectures, synthetic seeded weights; real MiniLM),
quantization backends and the model store. See docs/internals.md for the contract."""
from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from ..procfs import malloc_trim
from .specs import BACKENDS, EXECUTORCH_BACKENDS, MODELS, OPS, PAPER_TARGETS, PRESETS, SEED, ModelSpec, default_store
from .specs import check as specs_check
from .store import build, weight_files

__all__ = ["PRESETS", "MODELS", "BACKENDS", "EXECUTORCH_BACKENDS", "OPS", "PAPER_TARGETS", "ModelSpec", "Module", "default_store",
           "spec", "build", "load", "weight_files", "malloc_trim", "estimate_file_bytes"]

_SPEC_CACHE: dict = {}


def estimate_file_bytes(net) -> dict:
    """Bytes on disk per backend, from a (meta) float module's shapes and dtypes."""
    from torch import nn
    seen = set()
    fp32 = lin_w = lin_rows = emb_w = emb_rows = other = 0
    for mod in net.modules():
        for name, p in mod._parameters.items():
            if p is None:
                continue
            n = p.numel()
            tied = id(p) in seen
            seen.add(id(p))
            if not tied:
                fp32 += 4 * n
            if isinstance(mod, nn.Linear) and name == "weight":
                lin_w += n
                lin_rows += p.shape[0]
            elif isinstance(mod, nn.Embedding) and name == "weight":
                emb_w += n
                emb_rows += p.shape[0]
            elif not tied:
                other += 4 * n
    int8 = lin_w + 4 * lin_rows + emb_w + 4 * emb_rows + other
    return {"fp32": fp32, "torchao-int8": int8, "torchao-int8-weight-only": int8,
            "torch-dynamic-int8": lin_w + 4 * lin_rows + 4 * emb_w + other}


def spec(preset: str, model: str) -> ModelSpec:
    """Config, parameter count (on the meta device) and op defaults; no weights are made."""
    from . import specs
    specs.check(preset, model)
    key = (preset, model)
    if key not in _SPEC_CACHE:
        from . import store, zoo
        cfg = specs.arch_config(preset, model)
        net = zoo.make(model, cfg, cfg_dir=store.minilm_dir() if model == "sentence-encoder" else None)
        _SPEC_CACHE[key] = ModelSpec(preset=preset, model=model, config=cfg, params=zoo.count_params(net),
                                     ops=OPS[model], op_defaults=specs.OP_DEFAULTS[model],
                                     real_weights=model == "sentence-encoder",
                                     param_bytes=estimate_file_bytes(net))
        del net
    return _SPEC_CACHE[key]


class Module:
    """A loaded module: ops, example inputs, free()."""

    def __init__(self, net, preset, model, quant, meta=None, path=None):
        self.net, self.preset, self.model, self.quant = net, preset, model, quant
        self.name = f"{model}/{quant}"
        self.meta = meta or {}
        self.path = Path(path) if path else None
        self.tokenizer = None
        if model == "decoder":
            from .zoo import HashTokenizer
            self.tokenizer = HashTokenizer(net.lm.config.vocab_size)
            if self.path and (self.path / "tokenizer.json").exists() and not self.meta.get("seed"):
                from transformers import AutoTokenizer  # a real checkpoint's own tokenizer
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        elif model == "sentence-encoder":
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path))

    def __repr__(self):
        return f"<atomsim Module {self.preset}:{self.name}{' (freed)' if self.net is None else ''}>"

    @property
    def params(self) -> int:
        return int(self.meta.get("params") or 0)

    def _need(self, op):
        if self.net is None:
            raise RuntimeError(f"{self.name} was freed")
        if op not in OPS[self.model]:
            raise AttributeError(f"{self.model} has no op {op!r}; ops: {', '.join(OPS[self.model])}")

    def encode(self, frames):
        self._need("encode")
        from .zoo import encode
        return encode(self.net, frames)

    def caption(self, features, beam=4, tokens=23) -> list[int]:
        self._need("caption")
        from . import zoo
        fn = zoo.llama_caption if self.model == "decoder" else zoo.bert_caption
        return fn(self.net, features, beam=beam, tokens=tokens)

    def generate(self, prompt: str, tokens=64) -> str:
        self._need("generate")
        from .zoo import llama_generate
        return llama_generate(self.net, self.tokenizer, prompt, tokens=tokens)

    def embed(self, texts):
        self._need("embed")
        from .zoo import minilm_embed
        return minilm_embed(self.net, self.tokenizer, texts)

    def feature_dim(self) -> int:
        cfg = json.loads((self.path / "config.json").read_text()) if self.path else {}
        if self.model == "video-encoder":
            return cfg["out_dim"]
        if self.model == "bert-decoder":
            return cfg["feature_dim"]
        if self.model == "decoder":
            return self.net.lm.config.hidden_size
        return 384

    def example_inputs(self, op, frames=6, frame_size=224, items=5, prompt_tokens=128, beam=4, tokens=23,
                       **_ignored) -> tuple:
        """Real-shaped positional inputs of `op` (call as getattr(module, op)(*inputs))."""
        import torch
        self._need(op)
        g = torch.Generator().manual_seed(0)
        if op == "encode":
            return (torch.randn(frames, 3, frame_size, frame_size, generator=g),)
        if op == "caption":
            return (torch.randn(self.feature_dim(), generator=g), beam, tokens)
        if op == "generate":
            words = ["clip", "scene", "person", "city", "night", "gift", "video", "order"]
            return (" ".join(words[i % len(words)] for i in range(max(prompt_tokens - 1, 1))), tokens)
        # embed: `items` texts shaped like the pipeline's captions (what `index` embeds): `tokens`
        # words as the decoder's tokenizer writes a caption of that many tokens ("w<id>", ids of the
        # preset's vocabulary: a tiny caption's "w657" is 3 word pieces, a "w98765" 4; tiny embed of
        # 5 texts 0.08 s against 0.13 s with ids up to 128256)
        from .specs import arch_config
        vocab = int(arch_config(self.preset, "decoder")["llama"]["vocab_size"])
        ids = torch.randint(3, vocab, (items, tokens), generator=g).tolist()
        return ([" ".join(f"w{i}" for i in row) for row in ids],)

    def free(self) -> None:
        """Drop every reference to weights and tokenizer, collect, and trim the heap."""
        self.net = None
        self.tokenizer = None
        gc.collect()
        malloc_trim()


def load(preset, model, quant, store=None, path=None, verify=False, eager=True) -> Module:
    """Load from the store (or a local directory `path`), already quantized; never re-quantizes.

    Weights are memory-mapped from the file; with `eager` (default) every page is read before
    returning, so load time includes the read and the weights are resident (file-backed pages
    for fp32/torchao, anonymous memory for torch-dynamic-int8 whose weights are repacked).
    `verify` also checks the sha256 of the weight file (costs a full extra read).
    Before returning, the load's temporaries are collected and the heap trimmed, so that what
    the process keeps is the module (without it, glibc holds the freed temporaries as RSS).
    An ExecuTorch backend returns a ProgramModule (executorch_module.py): the same ops, run by its program."""
    if quant in EXECUTORCH_BACKENDS:
        from .executorch_module import load as load_program
        specs_check(preset, model, quant)
        mod = load_program(preset, model, quant, store=store, path=path, verify=verify)
        gc.collect()
        malloc_trim()
        return mod
    from .store import load_net
    net, meta, d = load_net(preset, model, quant, store=store, path=path, verify=verify, eager=eager)
    gc.collect()
    malloc_trim()
    return Module(net, preset, model, quant, meta=meta, path=d)


def preload() -> None:
    """Import everything a load needs, so that figures taken after it count the module only: the
    profiler's workers and the runner call it at start-up (an app imports its code once, before
    its first load; measured on the tiny preset, the runner's first sentence-encoder load took
    0.21 s with the imports, 0.19 s of it holding the interpreter lock, and 0.12 s after them)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # noqa: F401
    import safetensors.torch  # noqa: F401
    import transformers
    for name in ("CLIPVisionModel", "LlamaForCausalLM", "BertLMHeadModel", "BertModel", "AutoTokenizer",
                 "DynamicCache", "EncoderDecoderCache"):
        getattr(transformers, name, None)
    try:
        import torchao.quantization  # noqa: F401
    except Exception:
        pass
    for mod in ("atomsim.models.zoo", "atomsim.models.store", "atomsim.models.quant"):
        try:
            __import__(mod)
        except Exception:
            pass
